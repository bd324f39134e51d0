"""``farm tenants``: the operator's commands, straight on the database (like ``farm keys``):
list tenants, set a content policy, delete a tenant, review held images."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from models.infra.settings import get_settings

tenants_app = typer.Typer(help="Tenants: policies, deletion, held images.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
EXIT_INVALID = 2


@contextmanager
def _sessions() -> Iterator[sessionmaker[Session]]:
    from models.db.session import make_engine, make_session_factory

    engine = make_engine(get_settings().sqlalchemy_url, **get_settings().engine_kwargs("cli"))
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _tenant_id(session: Session, name: str) -> uuid.UUID:
    from models.db.policies import tenant_by_name

    tenant = tenant_by_name(session, name=name)
    if tenant is None:
        err.print(f"no tenant {name!r}")
        raise typer.Exit(EXIT_INVALID)
    return tenant.id


@tenants_app.command("list")
def tenants_list() -> None:
    """Every tenant, its live keys and jobs, and its policy."""
    from models.db.policies import list_tenants
    from models.domain.policy import policy_in

    with _sessions() as sessions, sessions() as session:
        tenants = list_tenants(session)
    table = Table("name", "keys", "jobs", "policy")
    for t in tenants:
        rules = policy_in(t.policy).model_dump(exclude_defaults=True)
        table.add_row(t.name, str(t.keys), str(t.jobs), json.dumps(rules) if rules else "-")
    console.print(table)


@tenants_app.command("policy")
def tenants_policy(
    name: str,
    allow: Annotated[list[str] | None, typer.Option(help="An allowed rating (repeat).")] = None,
    forced_rating: Annotated[str | None, typer.Option(help="Added to every prompt.")] = None,
    forced_negative: Annotated[str | None, typer.Option(help="Added to negatives.")] = None,
    screening_threshold: Annotated[float | None, typer.Option(help="Hold above it.")] = None,
    retention: Annotated[int | None, typer.Option(help="Seconds files are kept.")] = None,
    max_retention: Annotated[int | None, typer.Option(help="Longest a job may ask.")] = None,
    monthly_gpu_seconds: Annotated[float | None, typer.Option(help="Monthly budget.")] = None,
    metrics_by_name: Annotated[
        bool | None, typer.Option("--metrics-by-name/--metrics-hashed")
    ] = None,
    unset: Annotated[list[str] | None, typer.Option(help="A rule to remove (repeat).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every rule first.")] = False,
) -> None:
    """Show a tenant's policy, or change the rules given (the others stay)."""
    from models.db.policies import load_policy, save_policy
    from models.domain.policy import PolicyIn, policy_in

    given: dict[str, Any] = {
        "allowed_ratings": allow or None,
        "forced_rating": forced_rating,
        "forced_negative": forced_negative,
        "screening_threshold": screening_threshold,
        "retention_s": retention,
        "max_retention_s": max_retention,
        "monthly_gpu_seconds": monthly_gpu_seconds,
        "metrics_by_name": metrics_by_name,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    with _sessions() as sessions, sessions.begin() as session:
        tenant_id = _tenant_id(session, name)
        current = {} if clear else policy_in(load_policy(session, tenant_id=tenant_id)).model_dump()
        for field in unset or []:
            if field not in PolicyIn.model_fields:
                err.print(f"--unset: no rule {field!r} (rules: {', '.join(PolicyIn.model_fields)})")
                raise typer.Exit(EXIT_INVALID)
            current.pop(field, None)
        try:
            policy = PolicyIn.model_validate({**current, **changes})
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"]) or "policy"
                err.print(f"{where}: {error['msg'].removeprefix('Value error, ')}")
            raise typer.Exit(EXIT_INVALID) from None
        if changes or unset or clear:
            save_policy(session, tenant_id=tenant_id, policy=policy.policy())
    console.print_json(policy.model_dump_json())


@tenants_app.command("delete")
def tenants_delete(
    name: str, yes: Annotated[bool, typer.Option("--yes", help="Really delete it.")] = False
) -> None:
    """Delete a tenant and all of it: keys, jobs, campaigns, ledger; its stored objects
    go with the next retention sweep of ``farm beat``."""
    from models.service.retention import delete_tenant

    if not yes:
        err.print(f"this deletes tenant {name!r} and everything of it: add --yes")
        raise typer.Exit(EXIT_INVALID)
    with _sessions() as sessions, sessions.begin() as session:
        jobs = delete_tenant(session, settings=get_settings(), tenant_id=_tenant_id(session, name))
    console.print(f"tenant {name!r} deleted with {jobs} job(s); its files go with the next sweep")


@tenants_app.command("held")
def tenants_held(tenant: Annotated[str | None, typer.Option(help="One tenant.")] = None) -> None:
    """Images that screening held (up to 1,000), with their scores."""
    from models.db.holds import list_held

    with _sessions() as sessions, sessions() as session:
        tenant_id = None if tenant is None else _tenant_id(session, tenant)
        page = list_held(session, tenant_id=tenant_id, cursor=None, limit=1000)
    table = Table("job", "cell", "seed", "screening", "prompt")
    for h in page.items:
        label, score = h.analyses.get("screening", ("?", float("nan")))
        prompt = h.item.prompt if len(h.item.prompt) < 60 else h.item.prompt[:57] + "…"
        table.add_row(
            str(h.item.job_id), str(h.item.index), str(h.item.seed), f"{label} {score:.3f}", prompt
        )
    console.print(table)


def _decide(job_id: str, index: int, *, release: bool) -> None:
    from models.db.tables import Job
    from models.infra.storage import make_storage
    from models.service.holds import NotHeld, delete_held
    from models.service.holds import release as release_cell

    settings = get_settings()
    storage = make_storage(settings)
    with _sessions() as sessions, sessions.begin() as session:
        try:
            job = session.get(Job, uuid.UUID(job_id))
        except ValueError:
            job = None
        if job is None:
            err.print(f"no job {job_id!r}")
            raise typer.Exit(EXIT_INVALID)
        try:
            if release:
                release_cell(session, settings=settings, storage=storage, job=job, index=index)
            else:
                delete_held(session, storage=storage, job=job, index=index)
        except NotHeld as exc:
            err.print(str(exc))
            raise typer.Exit(EXIT_INVALID) from None
    console.print(f"cell {index} of job {job_id} {'released' if release else 'deleted'}")


@tenants_app.command("release")
def tenants_release(job_id: str, index: int) -> None:
    """Release a held image: it is listed again and returns to sheets and the gallery."""
    _decide(job_id, index, release=True)


@tenants_app.command("discard")
def tenants_discard(job_id: str, index: int) -> None:
    """Delete a held image for good (the cell stays, without an image)."""
    _decide(job_id, index, release=False)
