"""What the metrics read from the database: farm-wide gauges and a finished job's latency.

``api/metrics.py`` serves the gauges on ``/metrics``; ``worker/metrics.py``
observes the latency when a job ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from models.db.tables import Job, Shard
from models.domain.status import JobStatus, ShardStatus

_ACTIVE_JOBS = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True)
class FarmSnapshot:
    queue_depth: dict[str, int]  # model -> shards queued
    cells: dict[str, int]  # status -> cells


def read_snapshot(session: Session, *, models: Collection[str]) -> FarmSnapshot:
    """Queue depth per model and cells per status, from counters and indexes only."""
    # Both walk ix_shards_claim (model, status, ...): cost follows the queue, not history.
    queued_shards: dict[str, int] = dict(
        session.execute(
            select(Shard.model, func.count())
            .where(Shard.model.in_(models), Shard.status == ShardStatus.QUEUED)
            .group_by(Shard.model)
        ).all()
    )
    running_cells = session.scalar(
        select(func.coalesce(func.sum(Shard.size), 0)).where(
            Shard.model.in_(models), Shard.status == ShardStatus.RUNNING
        )
    )
    # One pass over jobs (one row per job, not per cell): the counters the runner keeps.
    unfinished = Job.total - Job.done - Job.failed - Job.cancelled
    pending, done, failed, cancelled = session.execute(
        select(
            func.coalesce(func.sum(case((Job.status.in_(_ACTIVE_JOBS), unfinished), else_=0)), 0),
            func.coalesce(func.sum(Job.done), 0),
            func.coalesce(func.sum(Job.failed), 0),
            func.coalesce(func.sum(Job.cancelled), 0),
        )
    ).one()
    running = min(int(running_cells or 0), int(pending))  # a retried shard has done cells too
    return FarmSnapshot(
        queue_depth={model: int(queued_shards.get(model, 0)) for model in models},
        cells={
            "queued": int(pending) - running,
            "running": running,
            "done": int(done),
            "failed": int(failed),
            "cancelled": int(cancelled),
        },
    )


def job_latency_s(session: Session, *, job_id: uuid.UUID) -> float | None:
    """Seconds from submission to the end of a finished job; None if it is not finished."""
    row = session.execute(
        select(Job.created_at, Job.finished_at).where(Job.id == job_id)
    ).one_or_none()
    if row is None:
        return None
    created_at, finished_at = row
    if finished_at is None:
        return None
    return max(0.0, (finished_at - created_at).total_seconds())
