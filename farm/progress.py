"""A live progress bar for a job: cells done / total, images/s, ETA.

The rate and the ETA come from the job's own timestamps and counters (the
API's view, which counts every worker), not from how often we happened to poll.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


def images_per_s(job: dict[str, Any], now: datetime | None = None) -> float | None:
    started = job.get("started_at")
    if not started or not job.get("done"):
        return None
    end = job.get("finished_at") or (now or datetime.now(UTC)).isoformat()
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(started)).total_seconds()
    return job["done"] / seconds if seconds > 0 else None


def eta_text(job: dict[str, Any]) -> str:
    eta = job.get("eta_seconds")
    if eta is None:
        return ""
    minutes, seconds = divmod(round(eta), 60)
    return f"ETA {minutes}:{seconds:02d}"


class JobProgress:
    def __init__(self, console: Console, total: int, label: str) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self.task: TaskID = self.progress.add_task(
            label, total=total, rate="", eta="", status="queued"
        )

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def update(self, job: dict[str, Any]) -> None:
        finished = job["done"] + job["failed"] + job["cancelled"]
        rate = images_per_s(job)
        self.progress.update(
            self.task,
            completed=finished,
            rate="" if rate is None else f"{rate:.2f} img/s",
            eta=eta_text(job),
            status=job["status"],
        )
