"""``farm``: run the services, manage keys, submit and watch jobs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from farm.cli_control import register as register_control
from farm.cli_keys import keys_app
from farm.cli_refine import register as register_refine
from farm.cli_tenants import tenants_app
from farm.client import FarmApiError, FarmClient
from farm.progress import JobProgress
from farm.specfile import load_specs
from models.infra.settings import get_settings

app = typer.Typer(help="Animagine render farm.", no_args_is_help=True, add_completion=False)
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
console = Console()
err = Console(stderr=True)

EXIT_FAILED = 1  # the job did not succeed
EXIT_API_ERROR = 2  # the API refused the request
SERVICES = frozenset({"api", "worker", "beat"})  # long-running: structured logs (FARM_LOG_*)


@app.callback()
def _start(ctx: typer.Context) -> None:
    try:  # read once per process; a configuration that cannot work stops here
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            err.print(
                f"[red]configuration error:[/red] {error['msg'].removeprefix('Value error, ')}"
            )
        raise typer.Exit(EXIT_API_ERROR) from None
    if ctx.invoked_subcommand in SERVICES:
        from models.infra.log_setup import setup_logging

        setup_logging(settings)


@app.command()
def migrate() -> None:
    """Apply database migrations (run before starting a new version)."""
    from migrations.apply import upgrade

    settings = get_settings()
    upgrade(settings.migration_url(settings.sqlalchemy_url))
    console.print(f"database at {settings.sqlalchemy_url.split('@')[-1]} is up to date")


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="API processes (each uses about one core when busy).")
    ] = 1,
) -> None:
    """Serve the HTTP API (and, with no FARM_BROKER_URL, an in-process worker)."""
    import uvicorn

    from farm.stack import build_app

    settings = get_settings()
    if workers > 1:
        if settings.embedded:
            err.print("--workers needs FARM_BROKER_URL: embedded mode renders in one process")
            raise typer.Exit(EXIT_API_ERROR)
        uvicorn.run(
            "farm.asgi:app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
        )
        return
    fastapi_app, worker = build_app(settings)
    if worker is not None:
        console.print(
            "embedded mode: no FARM_BROKER_URL; rendering, campaigns and webhooks run "
            "in this process"
        )
        worker.start()
    try:
        # uvicorn's loggers go through the root logger; RequestLog writes the access log.
        uvicorn.run(fastapi_app, host=host, port=port, log_config=None, access_log=False)
    finally:
        if worker is not None:
            worker.stop()


@app.command()
def worker(
    model: Annotated[
        str | None, typer.Option(help="Model to hold warm (default FARM_MODEL).")
    ] = None,
) -> None:
    """Run a GPU worker: one process, one warm pipeline, the model's queue."""
    settings = get_settings()
    if settings.embedded:
        err.print(
            "FARM_BROKER_URL is not set: a separate worker needs a broker "
            "(without one, `farm api` renders in-process)"
        )
        raise typer.Exit(EXIT_API_ERROR)
    # Here, not at the top: it would double every client command's start-up (0.7 -> 1.5 s).
    from models.infra.storage_check import refuse_without_storage
    from worker.celery_app import run_worker

    refuse_without_storage(settings)  # before it loads a model or says it is ready
    run_worker(settings, model or settings.model)


@app.command()
def beat() -> None:
    """Run the campaign scheduler and webhook delivery (as many processes as you like)."""
    settings = get_settings()
    if settings.embedded:
        err.print(
            "FARM_BROKER_URL is not set: `farm beat` publishes campaign runs to a broker "
            "(without one, `farm api` runs the scheduler in-process)"
        )
        raise typer.Exit(EXIT_API_ERROR)
    from beat.main import run_beat

    run_beat(settings)


def _client() -> FarmClient:
    settings = get_settings()
    if not settings.api_key:
        err.print("set FARM_API_KEY (create one with `farm keys create --tenant NAME`)")
        raise typer.Exit(EXIT_API_ERROR)
    return FarmClient(settings.api_url, settings.api_key)


def _api_error(exc: FarmApiError) -> typer.Exit:
    err.print(f"[red]error {exc.status}:[/red] {exc.message}")
    for d in exc.detail:
        err.print(f"  {d.get('field')}: {d.get('reason')}")
    return typer.Exit(EXIT_API_ERROR)


def watch(client: FarmClient, job: dict[str, Any]) -> dict[str, Any]:
    label = str(job.get("name") or job["id"])
    with JobProgress(console, int(str(job["total"])), label) as bar:
        return client.wait(str(job["id"]), poll_s=0.5, on_update=bar.update)


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(help="YAML, JSON or JSONL (one job per line).")],
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until done.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="Safe to retry with this.")] = None,
) -> None:
    """Submit one job (or many, from JSONL or a list) and optionally wait for it."""
    try:
        specs = load_specs(spec_file)
    except (OSError, ValueError) as exc:
        err.print(f"cannot read {spec_file}: {exc}")
        raise typer.Exit(EXIT_API_ERROR) from None
    with _client() as client:
        try:
            if len(specs) == 1:
                jobs = [client.submit(specs[0], idempotency_key=idempotency_key)]
            else:
                jobs = client.submit_bulk(specs, idempotency_key=idempotency_key)["jobs"]
        except FarmApiError as exc:
            raise _api_error(exc) from None
        for job in jobs:
            console.print(f"job {job['id']}: {job['total']} cells, {job['status']}")
        if not wait:
            return
        finals = [watch(client, job) for job in jobs]
        bad = [j for j in finals if j["status"] != "succeeded"]
        for j in finals:
            console.print(f"job {j['id']}: {j['status']} ({j['done']}/{j['total']} images)")
        for j in finals:  # last: where to look at the result
            if j["done"]:
                gallery = client.wait_for_file(j["links"]["gallery"], timeout_s=30)
                console.print(f"gallery: {gallery}", soft_wrap=True)
    if bad:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def status(job_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one job."""
    with _client() as client:
        try:
            job = client.job(job_id)
        except FarmApiError as exc:
            raise _api_error(exc) from None
    if as_json:
        print(json.dumps(job, indent=2))
        return
    table = Table("field", "value")
    for key in (
        "id",
        "name",
        "status",
        "paused",
        "priority",
        "total",
        "done",
        "failed",
        "cancelled",
        "held",
        "progress",
        "eta_seconds",
        "gpu_seconds",
        "max_gpu_seconds",
        "model",
        "created_at",
        "started_at",
        "finished_at",
        "retention_s",
        "expires_at",
        "expired_at",
        "removed_objects",
        "error",
    ):
        table.add_row(key, "" if job.get(key) is None else str(job[key]))
    console.print(table)
    for link in ("page", "gallery", "manifest"):  # whole, never cut to the table's width
        console.print(f"{link + ':':<10}{client.absolute(job['links'][link])}", soft_wrap=True)
    if job["status"] in ("failed", "partial", "cancelled"):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def jobs(
    status_filter: Annotated[str | None, typer.Option("--status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """List recent jobs."""
    with _client() as client:
        try:
            rows = client.jobs(status=status_filter, limit=limit)
        except FarmApiError as exc:
            raise _api_error(exc) from None
    table = Table("name", "status", "done/total", "created")
    table.add_column("id", no_wrap=True, min_width=36)  # whole, to copy into `farm status`
    for j in rows:
        created = j["created_at"][:16].replace("T", " ")
        table.add_row(
            j.get("name") or "", j["status"], f"{j['done']}/{j['total']}", created, j["id"]
        )
    console.print(table)


register_control(app, _client)  # pause, resume, priority, delete, usage
register_refine(app, _client)  # refine


@app.command()
def demo(
    steps: Annotated[
        int | None, typer.Option(help="Denoising steps (default: the card's 28).")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its data.")] = Path(
        "farm-demo"
    ),
    serve: Annotated[
        bool, typer.Option("--serve", help="Keep the API and web page up afterwards.")
    ] = False,
) -> None:
    """Run the whole farm in this process and render a sample Animagine grid."""
    from farm.demo import run_demo

    sys.exit(run_demo(console, data_dir=data_dir, steps=steps, serve=serve))
