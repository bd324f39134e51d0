"""The reconciler's statements: expired leases, queued shards per model, advisory locks.

The thread that runs them every few seconds is ``worker/reconciler.py``.
"""

from __future__ import annotations

import logging
import zlib
from datetime import datetime

from sqlalchemy import case, exists, func, select, text, update
from sqlalchemy.orm import Session

from models.db.running_counts import lock_counts_in_order
from models.db.tables import Job, Shard
from models.domain.status import ShardStatus

log = logging.getLogger(__name__)
_LOCK_BASE = 0x4641524D << 32  # "FARM" in the high bits: our advisory locks


def release_expired_leases(session: Session, *, now: datetime) -> int:
    """running shards past their lease -> queued, or paused if their job is (their cells
    were never recorded)."""
    paused = exists().where(Job.id == Shard.job_id, Job.paused_at.is_not(None))
    expired = list(
        session.execute(
            update(Shard)
            .where(Shard.status == ShardStatus.RUNNING, Shard.lease_until < now)
            .values(
                # A paused job's shard waits for the resume instead.
                status=case((paused, ShardStatus.PAUSED.value), else_=ShardStatus.QUEUED.value),
                claimed_by=None,
                lease_until=None,
                available_at=None,
                updated_at=now,
            )
            .returning(Shard.id, Shard.tenant_id, Shard.job_id)
        )
    )
    if expired:
        lock_counts_in_order(
            session, tenant_ids=[e.tenant_id for e in expired], job_ids=[e.job_id for e in expired]
        )
        ids = [e.id for e in expired]
        log.warning("released %d shard(s) whose worker stopped: %s", len(ids), ids)
    return len(expired)


def queued_counts(session: Session) -> dict[str, int]:
    return dict(
        session.execute(
            select(Shard.model, func.count())
            .where(Shard.status == ShardStatus.QUEUED)
            .group_by(Shard.model)
        ).all()
    )


def queued_ids(session: Session, *, model: str, limit: int) -> list[int]:
    """Hints for re-published tokens: the shards that are next anyway."""
    return list(
        session.scalars(
            select(Shard.id)
            .where(Shard.model == model, Shard.status == ShardStatus.QUEUED)
            .order_by(Shard.priority_rank, Shard.id)
            .limit(limit)
        )
    )


def try_lock(session: Session, name: str) -> bool:
    """One process per interval does each piece of work (a lease sweep, a model's tokens).

    A transaction-scoped lock: it is released when ``session``'s transaction ends.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite: one process (embedded mode)
    key = _LOCK_BASE + zlib.crc32(name.encode())
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}))
