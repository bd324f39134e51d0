"""A recorded attempt's follow-up on its job, in a transaction of its own after the
finish's COMMIT: a paused job's requeued shards are parked, a job past its GPU budget
stops, and a ``job.progress`` event is queued when one is due.

Why not in the finish's transaction: the finish's last step updates the job row's
counters and holds that row until COMMIT, and every other finisher of the job waits for
it; each statement after it is a round trip more of that wait (models/db/
record_attempt.py has the numbers). Most finishes skip this altogether (the finish says
whether the job is paused, at a GPU budget or asks for progress webhooks); when it runs,
the read is plain and often the whole of it. Only when an action is due does it lock
the job (every writer's order: job, then shards, then cells) and read again under the
lock, so two finishers never act on one reading (one progress event, one stop).

A process that dies between the finish and this loses little: a progress event (the
next finish's is due), a budget stop (the next finish's), the parking of a shard its
own finish requeued into a paused job (it may be rendered while paused; resuming would
have queued it anyway).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from models.db.claims import ClaimedShard, lock_job
from models.db.job_control import park_shards, stop_at_budget
from models.db.tables import Job
from models.db.webhook_events import enqueue_event
from models.domain.status import JobStatus
from models.domain.webhook_events import JOB_PROGRESS, WebhookProgress, progress_due

_FOLLOW_UP_COLUMNS = (
    Job.status,
    Job.paused_at,
    Job.max_gpu_ms,
    Job.render_ms_total,
    Job.total,
    Job.done,
    Job.failed,
    Job.cancelled,
    Job.started_at,
    Job.progress_at,
    Job.progress_fraction,
    Job.spec["webhook_url"].as_string().label("url"),
    Job.spec["webhook_progress"].label("progress"),
)


def follow_up(
    session: Session, *, shard: ClaimedShard, progress_min_interval_s: float, now: datetime
) -> JobStatus | None:
    """The job's follow-up (module docstring); its terminal status if its GPU budget
    ended it here."""
    job = _read(session, shard)
    if job is None or not _due(job, progress_min_interval_s, now):
        return None
    lock_job(session, shard.job_id)
    job = _read(session, shard)  # again, under the lock
    if job is None or not _due(job, progress_min_interval_s, now):
        return None
    if job.paused_at is not None:
        park_shards(session, job_id=shard.job_id)
    if _over_budget(job):
        final = stop_at_budget(
            session,
            job_id=shard.job_id,
            spent_ms=job.render_ms_total,
            budget_ms=job.max_gpu_ms,
            now=now,
        )
        if final is not None:
            return final
    if _progress_due(job, progress_min_interval_s, now):
        fraction = _fraction(job)
        session.execute(
            update(Job)
            .where(Job.id == shard.job_id)
            .values(progress_at=now, progress_fraction=fraction)
        )
        enqueue_event(
            session,
            job_id=shard.job_id,
            event=JOB_PROGRESS,
            extra={"progress": round(fraction, 4)},
            url=job.url,
        )
    return None


def _read(session: Session, shard: ClaimedShard) -> Row[Any] | None:
    job = session.execute(select(*_FOLLOW_UP_COLUMNS).where(Job.id == shard.job_id)).one_or_none()
    if job is None or JobStatus(job.status) not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return None
    return job


def _due(job: Row[Any], progress_min_interval_s: float, now: datetime) -> bool:
    return (
        job.paused_at is not None
        or _over_budget(job)
        or _progress_due(job, progress_min_interval_s, now)
    )


def _over_budget(job: Row[Any]) -> bool:
    return job.max_gpu_ms is not None and job.render_ms_total >= job.max_gpu_ms


def _fraction(job: Row[Any]) -> float:
    counted: int = job.done + job.failed + job.cancelled
    return counted / max(1, int(job.total))


def _progress_due(job: Row[Any], progress_min_interval_s: float, now: datetime) -> bool:
    if not (job.url and isinstance(job.progress, dict)):
        return False
    return progress_due(
        WebhookProgress.model_validate(job.progress),
        fraction=_fraction(job),
        last_fraction=job.progress_fraction or 0.0,
        last_at=job.progress_at,
        started_at=job.started_at,
        now=now,
        min_interval_s=progress_min_interval_s,
    )
