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
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from models.db.reconcile import queued_counts, queued_ids, release_expired_leases, try_lock
from models.db.tables import utcnow
from models.infra.periodic import Periodic
from models.infra.queue import Publisher

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    leases_expired: int = 0
    tokens_published: dict[str, int] = field(default_factory=dict)
    skipped: bool = False  # another process held the lock


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
        if try_lock(session, "leases"):
            report.leases_expired = release_expired_leases(session, now=now)
        for model, queued in queued_counts(session).items():
            if models is not None and model not in models:
                continue
            if not try_lock(session, f"tokens:{model}"):
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
