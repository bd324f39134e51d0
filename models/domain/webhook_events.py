"""Webhook event types, and when a job's next ``job.progress`` event is due.

Events (docs/CAMPAIGNS.md, "Webhooks"): ``job.completed`` when a job reaches a terminal
status, ``job.progress`` while it renders (throttled per job, below), ``job.paused`` and
``job.resumed``, and ``cell.held`` when screening holds one of its images.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

JOB_COMPLETED: Final = "job.completed"
JOB_PROGRESS: Final = "job.progress"
JOB_PAUSED: Final = "job.paused"
JOB_RESUMED: Final = "job.resumed"
CELL_HELD: Final = "cell.held"
EVENTS: Final = (JOB_COMPLETED, JOB_PROGRESS, JOB_PAUSED, JOB_RESUMED, CELL_HELD)


class WebhookProgress(BaseModel):
    """``job.progress`` for a job with a ``webhook_url``: an event once ``every_s`` seconds
    have passed since the last one, or once the job has moved ``every_percent`` points
    (whichever comes first; at least one is set). Never more often than the operator's
    ``FARM_WEBHOOK_PROGRESS_MIN_INTERVAL_S``, and never for the last cell:
    ``job.completed`` says that."""

    model_config = ConfigDict(extra="forbid")

    every_s: Annotated[float, Field(ge=1, le=86400)] | None = None
    every_percent: Annotated[float, Field(gt=0, le=100)] | None = None

    @model_validator(mode="after")
    def _one_is_set(self) -> Self:
        if self.every_s is None and self.every_percent is None:
            raise ValueError("set every_s, every_percent, or both")
        return self


def progress_due(
    progress: WebhookProgress,
    *,
    fraction: float,
    last_fraction: float,
    last_at: datetime | None,
    started_at: datetime | None,
    now: datetime,
    min_interval_s: float,
) -> bool:
    """Whether a ``job.progress`` event is due now (``fraction``: settled cells / total)."""
    if fraction >= 1.0 or fraction <= last_fraction:
        return False
    since = last_at or started_at
    elapsed_s = None if since is None else (now - since).total_seconds()
    if last_at is not None and elapsed_s is not None and elapsed_s < min_interval_s:
        return False
    by_time = progress.every_s is not None and (elapsed_s is None or elapsed_s >= progress.every_s)
    by_step = (
        progress.every_percent is not None
        and (fraction - last_fraction) * 100 >= progress.every_percent - 1e-9
    )
    return by_time or by_step
