"""Keeping Redis honest: Postgres says what work exists, the broker only carries tokens.

Each message in a model's queue is a token: "a shard of this model is waiting".
The reconciler makes sure that

- a shard whose worker stopped heart-beating (lease expired: killed, lost its
  network, OOM-killed by the kernel) goes back to the queue, and
- every queued shard has a token: when Redis lost messages (a flush, a restart
  without persistence, a crash between commit and publish), the missing ones
  are published again. Extra tokens are harmless: a worker that finds nothing
  to claim acknowledges and moves on.

Run from every worker and from ``farm beat``; a Postgres advisory lock makes
one of them do it per interval.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from models.queue import Publisher
from models.status import ShardStatus
from models.tables import Shard, utcnow

log = logging.getLogger(__name__)
_LOCK_KEY = 0x4641524D  # "FARM": one reconciler at a time across the fleet


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


def _try_lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite: one process (embedded mode)
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}))


def reconcile_once(
    sessions: sessionmaker[Session], publisher: Publisher, *, now: datetime | None = None
) -> ReconcileReport:
    now = now or utcnow()
    report = ReconcileReport()
    with sessions.begin() as session:
        if not _try_lock(session):
            report.skipped = True
            return report
        report.leases_expired = release_expired_leases(session, now=now)
        for model, queued in queued_counts(session).items():
            missing = queued - publisher.ready_count(model=model)
            if missing > 0:
                hints = queued_ids(session, model=model, limit=missing)
                publisher.publish(model=model, shard_ids=hints)
                report.tokens_published[model] = missing
                log.warning("re-published %d token(s) for model %s", missing, model)
    return report


class Reconciler:
    """Runs ``reconcile_once`` every ``interval_s`` on a daemon thread."""

    def __init__(
        self, sessions: sessionmaker[Session], publisher: Publisher, *, interval_s: float
    ) -> None:
        self.sessions = sessions
        self.publisher = publisher
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        # First pass at once: work queued before a restart gets its tokens back.
        while True:
            try:
                reconcile_once(self.sessions, self.publisher)
            except Exception:  # a database restart must not kill the loop
                log.exception("reconcile failed; trying again in %.0f s", self.interval_s)
            if self._stop.wait(self.interval_s):
                return
