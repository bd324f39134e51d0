"""A job under way, steered: pause, resume, a new priority, and a stop at its GPU budget.

Pausing moves the job's queued shards to ``paused``: the claim takes only ``queued``
shards, so no new shard starts, while shards in flight finish and are recorded. A
shard that comes back while the job is paused (a retry, an expired lease) is parked
the same way (``park_if_paused``). Resuming moves them back to ``queued``; the caller
publishes their ids after the commit. Each writer locks the job row first (the order
every writer keeps: job, then shards, then cells).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from models.db.finish import settle_job
from models.db.tables import Item, Job, Shard, utcnow
from models.db.webhook_events import enqueue_event
from models.domain.status import TERMINAL_JOB_STATUSES, CellStatus, JobStatus, Priority, ShardStatus
from models.domain.webhook_events import JOB_PAUSED, JOB_RESUMED


class JobFinished(Exception):
    """The job has a terminal status: there is nothing left to steer."""

    def __init__(self, status: str) -> None:
        super().__init__(f"job already finished with status {status!r}")
        self.status = status


def _locked_open(session: Session, job: Job) -> None:
    session.refresh(job, with_for_update=True)
    if JobStatus(job.status) in TERMINAL_JOB_STATUSES:
        raise JobFinished(job.status)


def _bump(session: Session, job: Job, **values: object) -> None:
    session.execute(update(Job).where(Job.id == job.id).values(version=Job.version + 1, **values))
    session.refresh(job)


def pause_job(session: Session, *, job: Job) -> bool:
    """Queued shards -> paused; False if it was paused already. JobFinished if finished."""
    _locked_open(session, job)
    if job.paused_at is not None:
        return False
    park_shards(session, job_id=job.id)
    _bump(session, job, paused_at=utcnow())
    enqueue_event(session, job_id=job.id, event=JOB_PAUSED)
    return True


def resume_job(session: Session, *, job: Job) -> list[int] | None:
    """Paused shards -> queued; returns their ids to publish (None: it was not paused)."""
    _locked_open(session, job)
    if job.paused_at is None:
        return None
    shard_ids = list(
        session.scalars(
            update(Shard)
            .where(Shard.job_id == job.id, Shard.status == ShardStatus.PAUSED)
            .values(status=ShardStatus.QUEUED, updated_at=utcnow())
            .returning(Shard.id)
        )
    )
    _bump(session, job, paused_at=None)
    enqueue_event(session, job_id=job.id, event=JOB_RESUMED)
    return shard_ids


def set_priority(session: Session, *, job: Job, priority: Priority) -> list[int]:
    """The job's priority, and its shards' that are waiting (queued or paused); returns
    the queued shards' ids (published again, so that a worker looks at them now)."""
    _locked_open(session, job)
    rows = session.execute(
        update(Shard)
        .where(
            Shard.job_id == job.id,
            Shard.status.in_([ShardStatus.QUEUED, ShardStatus.PAUSED]),
        )
        .values(priority_rank=priority.rank, updated_at=utcnow())
        .returning(Shard.id, Shard.status)
    ).all()
    _bump(session, job, priority=priority.value)
    return [shard_id for shard_id, status in rows if status == ShardStatus.QUEUED]


def park_shards(session: Session, *, job_id: uuid.UUID) -> int:
    """The job's queued shards -> paused (the caller holds the job's lock)."""
    result = session.execute(
        update(Shard)
        .where(Shard.job_id == job_id, Shard.status == ShardStatus.QUEUED)
        .values(status=ShardStatus.PAUSED, updated_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def stop_at_budget(
    session: Session, *, job_id: uuid.UUID, spent_ms: int, budget_ms: int, now: datetime
) -> JobStatus | None:
    """The job spent its GPU budget: its waiting shards and their cells fail with the
    reason (shards in flight finish and are recorded). Returns the job's terminal status
    if this ended it (``partial`` when some cells were done)."""
    shards = list(
        session.scalars(
            update(Shard)
            .where(
                Shard.job_id == job_id,
                Shard.status.in_([ShardStatus.QUEUED, ShardStatus.PAUSED]),
            )
            .values(status=ShardStatus.FAILED, lease_until=None, updated_at=now)
            .returning(Shard.index)
        )
    )
    if not shards:
        return None
    reason = (
        f"stopped: the job's GPU budget of {budget_ms / 1000:g} s is spent ({spent_ms / 1000:g} s)"
    )
    failed = session.execute(
        update(Item)
        .where(
            Item.job_id == job_id,
            Item.shard_index.in_(shards),
            Item.status == CellStatus.QUEUED,
        )
        .values(status=CellStatus.FAILED, error=reason, finished_at=now)
    ).rowcount  # type: ignore[attr-defined]
    counters = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(failed=Job.failed + failed, error=reason, version=Job.version + 1)
        .returning(Job.status, Job.total, Job.done, Job.failed, Job.cancelled)
    ).one()
    return settle_job(
        session,
        job_id=job_id,
        status=counters.status,
        total=counters.total,
        done=counters.done,
        failed=counters.failed,
        cancelled=counters.cancelled,
    )
