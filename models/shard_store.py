"""Claiming and completing shards: the worker side of the data layer.

Every transition is a conditional UPDATE, so a duplicate message, a second
worker or a late worker changes nothing that another already did.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.status import CellStatus, JobStatus, ShardStatus, final_job_status
from models.tables import Item, Job, Shard, utcnow


@dataclass(frozen=True)
class ClaimedShard:
    id: int
    job_id: uuid.UUID
    tenant_id: uuid.UUID
    index: int
    model: str
    attempts: int


@dataclass(frozen=True)
class CellResult:
    index: int
    key: str
    sha256: str
    rating: str | None
    render_ms: int


def claim_shard(
    session: Session, *, shard_id: int, worker: str, lease_s: int
) -> ClaimedShard | None:
    """queued -> running for this worker, or None if it is not (or no longer) queued."""
    now = utcnow()
    row = session.execute(
        update(Shard)
        .where(Shard.id == shard_id, Shard.status == ShardStatus.QUEUED)
        .values(
            status=ShardStatus.RUNNING,
            claimed_by=worker,
            lease_until=now + timedelta(seconds=lease_s),
            attempts=Shard.attempts + 1,
            updated_at=now,
        )
        .returning(
            Shard.id, Shard.job_id, Shard.tenant_id, Shard.index, Shard.model, Shard.attempts
        )
    ).one_or_none()
    if row is None:
        return None
    session.execute(
        update(Job)
        .where(Job.id == row.job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.RUNNING, started_at=now, version=Job.version + 1)
    )
    return ClaimedShard(*row)


def shard_cells(session: Session, *, shard: ClaimedShard) -> list[Item]:
    """The shard's cells that still need an image, in index order."""
    return list(
        session.scalars(
            select(Item)
            .where(
                Item.job_id == shard.job_id,
                Item.shard_index == shard.index,
                Item.status == CellStatus.QUEUED,
            )
            .order_by(Item.index)
        )
    )


def job_is_cancelled(session: Session, *, job_id: uuid.UUID) -> bool:
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    return status == JobStatus.CANCELLED


@dataclass(frozen=True)
class ShardCompletion:
    recorded: int  # cells newly recorded; a re-render of a recorded cell counts nothing
    job_status: JobStatus | None  # the job's terminal status if this completion ended it


def complete_shard(
    session: Session, *, shard: ClaimedShard, worker: str, results: list[CellResult]
) -> ShardCompletion:
    """Record images, bump the job counters by what is new, finish the shard (and job)."""
    now = utcnow()
    recorded = 0
    render_ms = 0
    for r in results:
        recorded += session.execute(
            update(Item)
            .where(
                Item.job_id == shard.job_id,
                Item.index == r.index,
                Item.status == CellStatus.QUEUED,
            )
            .values(
                status=CellStatus.DONE,
                key=r.key,
                sha256=r.sha256,
                rating=r.rating,
                render_ms=r.render_ms,
                attempts=Item.attempts + 1,
                finished_at=now,
                error=None,
            )
        ).rowcount  # type: ignore[attr-defined]
        render_ms += r.render_ms
    session.execute(
        update(Shard)
        .where(
            Shard.id == shard.id, Shard.status == ShardStatus.RUNNING, Shard.claimed_by == worker
        )
        .values(status=ShardStatus.DONE, lease_until=None, updated_at=now)
    )
    final = _bump_job(session, job_id=shard.job_id, done=recorded, failed=0, render_ms=render_ms)
    return ShardCompletion(recorded, final)


def fail_shard(
    session: Session, *, shard: ClaimedShard, worker: str, error: str, retry: bool
) -> JobStatus | None:
    """A render that raised: put the shard back in the queue, or fail its cells for good."""
    now = utcnow()
    if retry:
        session.execute(
            update(Shard)
            .where(
                Shard.id == shard.id,
                Shard.status == ShardStatus.RUNNING,
                Shard.claimed_by == worker,
            )
            .values(status=ShardStatus.QUEUED, claimed_by=None, lease_until=None, updated_at=now)
        )
        session.execute(
            update(Item)
            .where(
                Item.job_id == shard.job_id,
                Item.shard_index == shard.index,
                Item.status == CellStatus.QUEUED,
            )
            .values(error=error, attempts=Item.attempts + 1)
        )
        return None
    failed = session.execute(
        update(Item)
        .where(
            Item.job_id == shard.job_id,
            Item.shard_index == shard.index,
            Item.status == CellStatus.QUEUED,
        )
        .values(status=CellStatus.FAILED, error=error, attempts=Item.attempts + 1, finished_at=now)
    ).rowcount  # type: ignore[attr-defined]
    session.execute(
        update(Shard)
        .where(
            Shard.id == shard.id, Shard.status == ShardStatus.RUNNING, Shard.claimed_by == worker
        )
        .values(status=ShardStatus.FAILED, lease_until=None, updated_at=now)
    )
    return _bump_job(session, job_id=shard.job_id, done=0, failed=failed, render_ms=0, error=error)


def _bump_job(
    session: Session,
    *,
    job_id: uuid.UUID,
    done: int,
    failed: int,
    render_ms: int,
    error: str | None = None,
) -> JobStatus | None:
    """Add to the counters; returns the terminal status if this update finished the job."""
    values: dict[str, object] = {
        "done": Job.done + done,
        "failed": Job.failed + failed,
        "render_ms_total": Job.render_ms_total + render_ms,
        "version": Job.version + 1,
    }
    if error is not None:
        values["error"] = error
    counters = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(**values)
        .returning(Job.status, Job.total, Job.done, Job.failed, Job.cancelled)
    ).one()
    if JobStatus(counters.status) not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return None
    final = final_job_status(
        total=counters.total,
        done=counters.done,
        failed=counters.failed,
        cancelled=counters.cancelled,
    )
    if final is not None:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=final, finished_at=utcnow(), version=Job.version + 1)
        )
    return final


def queued_shard_ids(session: Session) -> list[tuple[str, int]]:
    """(model, shard id) of every queued shard: re-published after an embedded restart."""
    rows = session.execute(
        select(Shard.model, Shard.id)
        .where(Shard.status == ShardStatus.QUEUED)
        .order_by(Shard.priority_rank, Shard.id)
    )
    return [(model, shard_id) for model, shard_id in rows]
