"""Keeping Redis honest: Postgres says what work exists, the broker only carries tokens.

Each message in a model's queue is a token: "a shard of this model is waiting".
The reconciler makes sure that

- a shard whose worker stopped heart-beating (lease expired: killed, lost its
  network, OOM-killed by the kernel) goes back to the queue, and
- every queued shard has a token: when Redis lost messages (a flush, a restart
  without persistence, a crash between commit and publish), the missing ones
  are published again. Extra tokens are harmless: a worker that finds nothing
  to claim acknowledges and moves on.

Each worker runs it for its own model; Postgres advisory locks make one
process do each piece of work per interval.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Shard, utcnow
from models.domain.status import ShardStatus
from models.infra.periodic import Periodic
from models.infra.queue import Publisher

log = logging.getLogger(__name__)
_LOCK_BASE = 0x4641524D << 32  # "FARM" in the high bits: our advisory locks


@dataclass
class ReconcileReport:
    leases_expired: int = 0
    tokens_published: dict[str, int] = field(default_factory=dict)
    skipped: bool = False  # another process held the lock


def release_expired_leases(session: Session, *, now: datetime) -> int:
    """running shards past their lease -> queued (their cells were never recorded)."""
    expired = list(
        session.scalars(
            update(Shard)
            .where(Shard.status == ShardStatus.RUNNING, Shard.lease_until < now)
            .values(
                status=ShardStatus.QUEUED,
                claimed_by=None,
                lease_until=None,
                available_at=None,
                updated_at=now,
            )
            .returning(Shard.id)
        )
    )
    if expired:
        log.warning("released %d shard(s) whose worker stopped: %s", len(expired), expired)
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


def _try_lock(session: Session, name: str) -> bool:
    """One process per interval does each piece of work (a lease sweep, a model's tokens)."""
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite: one process (embedded mode)
    key = _LOCK_BASE + zlib.crc32(name.encode())
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}))


def reconcile_once(
    sessions: sessionmaker[Session],
    publisher: Publisher,
    *,
    models: Collection[str] | None = None,
    now: datetime | None = None,
) -> ReconcileReport:
    """Re-queue shards of dead workers; give ``models``' queued shards their tokens.

    A worker keeps its own model's queue honest (``models=[model]``); None means all.
    """
    now = now or utcnow()
    report = ReconcileReport()
    with sessions.begin() as session:
        if _try_lock(session, "leases"):
            report.leases_expired = release_expired_leases(session, now=now)
        for model, queued in queued_counts(session).items():
            if models is not None and model not in models:
                continue
            if not _try_lock(session, f"tokens:{model}"):
                report.skipped = True
                continue
            missing = queued - publisher.ready_count(model=model)
            if missing > 0:
                hints = queued_ids(session, model=model, limit=missing)
                publisher.publish(model=model, shard_ids=hints)
                report.tokens_published[model] = missing
                log.warning("re-published %d token(s) for model %s", missing, model)
    return report


class Reconciler(Periodic):
    """Runs ``reconcile_once`` every ``interval_s``, the first pass at once (work queued
    before a restart gets its tokens back)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        publisher: Publisher,
        *,
        interval_s: float,
        models: Collection[str] | None = None,
    ) -> None:
        self.sessions = sessions
        self.publisher = publisher
        self.models = None if models is None else frozenset(models)
        super().__init__(self._pass, interval_s=interval_s, name="reconciler", run_first=True)

    def _pass(self) -> None:
        reconcile_once(self.sessions, self.publisher, models=self.models)
