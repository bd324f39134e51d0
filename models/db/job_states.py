"""A job's state changes after it is made: cancel it, retry its failed cells.

Both lock the job row first (the lock order every writer follows: job, then shards,
then cells), so they never race a worker finishing the same job.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from models.db.outbox import enqueue_job_completed
from models.db.retention import set_expiry
from models.db.running_counts import lock_counts_in_order
from models.db.tables import Item, Job, Shard, utcnow
from models.domain.status import TERMINAL_JOB_STATUSES, CellStatus, JobStatus, ShardStatus

_WAITING_OR_RUNNING = (ShardStatus.QUEUED, ShardStatus.PAUSED, ShardStatus.RUNNING)


def cancel_job(session: Session, *, job: Job) -> bool:
    """Stop a job: queued shards and unrendered cells are cancelled at once.

    A render in flight is interrupted between denoising steps (the worker's
    heartbeat notices within a second); anything that still finishes is not
    recorded or uploaded. Returns False if the job had already finished.
    """
    session.refresh(job, with_for_update=True)  # serialise with workers finishing it
    if JobStatus(job.status) in TERMINAL_JOB_STATUSES:
        return False
    now = utcnow()
    session.execute(
        update(Shard)
        .where(Shard.job_id == job.id, Shard.status.in_(_WAITING_OR_RUNNING))
        .values(status=ShardStatus.CANCELLED, updated_at=now)
    )
    lock_counts_in_order(session, tenant_ids=[job.tenant_id], job_ids=[job.id])
    cancelled = session.execute(
        update(Item)
        .where(Item.job_id == job.id, Item.status == CellStatus.QUEUED)
        .values(status=CellStatus.CANCELLED, finished_at=now)
    ).rowcount  # type: ignore[attr-defined]
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(
            status=JobStatus.CANCELLED,
            cancelled=Job.cancelled + cancelled,
            finished_at=now,
            version=Job.version + 1,
        )
    )
    set_expiry(session, job_id=job.id, finished_at=now)
    enqueue_job_completed(session, job_id=job.id)  # the webhook, in this transaction
    session.refresh(job)
    return True


def retry_failed(session: Session, *, job: Job) -> list[int]:
    """Put a job's failed cells (only those) back in the queue; returns their shard ids.

    Done cells keep their images: their shards render only what is still queued.
    """
    session.refresh(job, with_for_update=True)
    if job.status == JobStatus.CANCELLED:
        return []
    now = utcnow()
    rows = list(
        session.scalars(
            update(Item)
            .where(Item.job_id == job.id, Item.status == CellStatus.FAILED)
            .values(status=CellStatus.QUEUED, attempts=0, error=None, finished_at=None)
            .returning(Item.shard_index)
        )
    )
    if not rows:
        return []
    shard_ids = list(
        session.scalars(
            update(Shard)
            .where(
                Shard.job_id == job.id,
                Shard.index.in_(set(rows)),
                Shard.status.in_([ShardStatus.DONE, ShardStatus.FAILED]),
            )
            .values(
                # A paused job's shards wait for its resume.
                status=ShardStatus.PAUSED if job.paused_at else ShardStatus.QUEUED,
                claimed_by=None,
                lease_until=None,
                available_at=None,
                attempts=0,
                updated_at=now,
            )
            .returning(Shard.id)
        )
    )
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(
            status=JobStatus.RUNNING,
            failed=Job.failed - len(rows),
            finished_at=None,
            expires_at=None,
            error=None,
            version=Job.version + 1,
        )
    )
    session.refresh(job)
    return shard_ids
