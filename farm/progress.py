"""A live progress bar for a job: cells done / total, images/s, ETA."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class JobProgress:
    def __init__(self, console: Console, total: int, label: str) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self.task: TaskID = self.progress.add_task(label, total=total, rate="", status="queued")

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def update(self, job: dict[str, Any]) -> None:
        finished = job["done"] + job["failed"] + job["cancelled"]
        speed = self.progress.tasks[self.task].speed
        rate = f"{speed:.2f} img/s" if speed else ""
        self.progress.update(self.task, completed=finished, rate=rate, status=job["status"])
