"""Retention and deletion: when a finished job's files expire, what expired, and the queue
of folders to empty (expired jobs, deleted jobs and tenants).

A job with a retention gets ``expires_at`` when it reaches a terminal status
(``set_expiry``). The sweep (models/service/retention.py, run by ``farm beat``) takes
due jobs with ``FOR UPDATE SKIP LOCKED``, marks their done cells ``expired`` and queues
their folders; then it empties queued folders, each twice: at once, and again after a
grace period (a worker may still have been writing a sheet or the manifest).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from models.db.business_tables import StorageDeletion
from models.db.tables import Item, Job, Shard, Tenant
from models.domain.status import CellStatus

PASSES = 2  # each folder is emptied twice: now, and after the grace period


def set_expiry(session: Session, *, job_id: uuid.UUID, finished_at: datetime) -> None:
    """A job just finished: its files expire ``retention_s`` from now (if it has one)."""
    retention_s = session.scalar(select(Job.retention_s).where(Job.id == job_id))
    if retention_s:
        expires = finished_at + timedelta(seconds=retention_s)
        session.execute(update(Job).where(Job.id == job_id).values(expires_at=expires))


def due_expiries(
    session: Session, *, now: datetime, limit: int
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Jobs whose files are due to go, locked for this caller: (job, tenant)."""
    rows = session.execute(
        select(Job.id, Job.tenant_id)
        .where(Job.expires_at <= now, Job.expired_at.is_(None))
        .order_by(Job.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [(row.id, row.tenant_id) for row in rows]


def mark_expired(session: Session, *, job_id: uuid.UUID, now: datetime) -> int:
    """The job's done cells -> expired (their keys are kept: what was removed); returns
    how many."""
    expired = session.execute(
        update(Item)
        .where(Item.job_id == job_id, Item.status == CellStatus.DONE)
        .values(status=CellStatus.EXPIRED)
    ).rowcount  # type: ignore[attr-defined]
    # A held image expires with the rest: no operator can release it any more.
    session.execute(
        update(Item).where(Item.job_id == job_id, Item.hold == "held").values(hold="deleted")
    )
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(expired_at=now, removed_objects=0, held=0, version=Job.version + 1)
    )
    return int(expired)


def queue_deletion(
    session: Session, *, prefix: str, reason: str, now: datetime, job_id: uuid.UUID | None = None
) -> None:
    session.add(
        StorageDeletion(
            prefix=prefix, job_id=job_id, reason=reason, passes=0, not_before=now, created_at=now
        )
    )


@dataclass(frozen=True)
class DeletionTask:
    id: int
    prefix: str
    job_id: uuid.UUID | None
    passes: int


def claim_deletions(
    session: Session, *, now: datetime, lease_s: float, limit: int
) -> list[DeletionTask]:
    """Due folders, leased to this caller (a crashed sweeper's come back after the lease)."""
    rows = session.scalars(
        select(StorageDeletion)
        .where(StorageDeletion.not_before <= now)
        .order_by(StorageDeletion.not_before, StorageDeletion.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.not_before = now + timedelta(seconds=lease_s)
    session.flush()
    return [DeletionTask(r.id, r.prefix, r.job_id, r.passes) for r in rows]


def deletion_done(
    session: Session, *, task: DeletionTask, deleted: int, grace_s: float, now: datetime
) -> None:
    """Count what a pass deleted (on the expired job); drop the row after the last pass."""
    if task.job_id is not None and deleted:
        session.execute(
            update(Job)
            .where(Job.id == task.job_id)
            .values(
                removed_objects=func.coalesce(Job.removed_objects, 0) + deleted,
                version=Job.version + 1,
            )
        )
    if task.passes + 1 >= PASSES:
        session.execute(delete(StorageDeletion).where(StorageDeletion.id == task.id))
        return
    session.execute(
        update(StorageDeletion)
        .where(StorageDeletion.id == task.id)
        .values(passes=task.passes + 1, not_before=now + timedelta(seconds=grace_s))
    )


def deletion_failed(session: Session, *, task: DeletionTask, error: str) -> None:
    """Keep the row: it comes back when its lease ends."""
    session.execute(
        update(StorageDeletion).where(StorageDeletion.id == task.id).values(last_error=error[:2000])
    )


def delete_job_rows(session: Session, *, job_id: uuid.UUID) -> None:
    """The job, its cells and shards (explicitly: SQLite has no trigger for them); its
    analyses, deliveries and runs' links go by their foreign keys."""
    session.execute(delete(Item).where(Item.job_id == job_id))
    session.execute(delete(Shard).where(Shard.job_id == job_id))
    session.execute(delete(Job).where(Job.id == job_id))


def delete_tenant_rows(session: Session, *, tenant_id: uuid.UUID) -> int:
    """The tenant and everything of it; returns how many jobs went."""
    jobs = select(Job.id).where(Job.tenant_id == tenant_id)
    session.execute(delete(Item).where(Item.job_id.in_(jobs)))
    session.execute(delete(Shard).where(Shard.tenant_id == tenant_id))
    gone = session.execute(delete(Job).where(Job.tenant_id == tenant_id)).rowcount  # type: ignore[attr-defined]
    session.execute(delete(Tenant).where(Tenant.id == tenant_id))
    return int(gone)
