"""``farm pause|resume|priority|delete|usage``: steer jobs and read the ledger, over HTTP
(``FARM_API_URL``, ``FARM_API_KEY``), like ``farm status``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from farm.client import FarmApiError, FarmClient

console = Console()
err = Console(stderr=True)
EXIT_API_ERROR = 2


def call_api(client_of: Callable[[], FarmClient], action: Callable[[FarmClient], Any]) -> Any:
    with client_of() as client:
        try:
            return action(client)
        except FarmApiError as exc:
            err.print(f"[red]error {exc.status}:[/red] {exc.message}")
            for d in exc.detail:
                err.print(f"  {d.get('field')}: {d.get('reason')}")
            raise typer.Exit(EXIT_API_ERROR) from None


def _state(job: dict[str, Any]) -> str:
    return f"{job['status']}{' (paused)' if job.get('paused') else ''}"


def register(app: typer.Typer, client_of: Callable[[], FarmClient]) -> None:
    """Add the commands to ``farm`` (``client_of`` makes the configured client)."""

    @app.command()
    def pause(job_id: str) -> None:
        """Pause a job: no new shard starts; shards rendering now finish."""
        job = call_api(client_of, lambda c: c.pause(job_id))
        console.print(f"job {job['id']}: {_state(job)}, {job['done']}/{job['total']} images")

    @app.command()
    def resume(job_id: str) -> None:
        """Resume a paused job: its waiting shards go back in the queue."""
        job = call_api(client_of, lambda c: c.resume(job_id))
        console.print(f"job {job['id']}: {_state(job)}, {job['done']}/{job['total']} images")

    @app.command()
    def priority(
        job_id: str,
        level: Annotated[str, typer.Argument(help="high, normal or bulk.")],
    ) -> None:
        """Change the priority of a job's waiting shards (boost with ``high``)."""
        job = call_api(client_of, lambda c: c.set_priority(job_id, level))
        console.print(f"job {job['id']}: priority {job['priority']}, {_state(job)}")

    @app.command()
    def delete(job_id: str) -> None:
        """Delete a finished job: its cells now, its stored files by the next sweep."""
        call_api(client_of, lambda c: c.delete(job_id))
        console.print(f"job {job_id} deleted")

    @app.command()
    def usage(
        start: Annotated[str | None, typer.Option("--from", help="ISO time (UTC).")] = None,
        end: Annotated[str | None, typer.Option("--to", help="ISO time (UTC).")] = None,
        group_by: Annotated[str, typer.Option(help="day, job or model.")] = "day",
    ) -> None:
        """GPU seconds from the ledger (default: this month), and the monthly budget."""
        report = call_api(client_of, lambda c: c.usage(start=start, end=end, group_by=group_by))
        table = Table(group_by, "cells", "GPU seconds", "devices")
        for item in report["items"]:
            table.add_row(
                item["key"],
                str(item["cells"]),
                f"{item['gpu_seconds']:.1f}",
                ", ".join(item["devices"]),
            )
        total = report["total"]
        table.add_row("total", str(total["cells"]), f"{total['gpu_seconds']:.1f}", "")
        console.print(table)
        budget = report["budget"]
        if budget["monthly_gpu_seconds"] is not None:
            console.print(
                f"this month: {budget['used_this_month']:.1f} of "
                f"{budget['monthly_gpu_seconds']:g} GPU seconds ({budget['remaining']:.1f} left)"
            )
