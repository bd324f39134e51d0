"""A worker's hold on the shards it renders: lease renewal, and which of their jobs
were cancelled meanwhile (the heartbeat asks both)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from models.db.tables import Job, Shard, utcnow
from models.domain.status import JobStatus, ShardStatus


def renew_leases(session: Session, *, shard_ids: list[int], worker: str, lease_s: int) -> None:
    """Heartbeat: the shards this worker still holds stay its own."""
    if shard_ids:
        session.execute(
            update(Shard)
            .where(
                Shard.id.in_(shard_ids),
                Shard.claimed_by == worker,
                Shard.status == ShardStatus.RUNNING,
            )
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        )


def cancelled_query(job_ids: list[uuid.UUID]) -> Select[uuid.UUID]:
    return select(Job.id).where(Job.id.in_(job_ids), Job.status == JobStatus.CANCELLED)


def cancelled_jobs(session: Session, *, job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    if not job_ids:
        return set()
    return set(session.scalars(cancelled_query(job_ids)))
