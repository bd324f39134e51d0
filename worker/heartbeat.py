"""The worker's pulse: keep leases on held shards, notice cancelled jobs quickly."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from models.db.leases import cancelled_jobs, renew_leases
from models.infra.periodic import Periodic


class Heartbeat(Periodic):
    """Every ``interval_s``: which held jobs were cancelled; every lease/3: renew leases."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        worker: str,
        lease_s: int,
        interval_s: float,
        held: Callable[[], dict[int, uuid.UUID]],  # shard id -> job id, held now
        on_cancelled: Callable[[set[uuid.UUID]], None],
    ) -> None:
        self.sessions = sessions
        self.worker = worker
        self.lease_s = lease_s
        self.held = held
        self.on_cancelled = on_cancelled
        self._renewed_at = 0.0
        super().__init__(self._beat, interval_s=interval_s, name="heartbeat")

    def _beat(self) -> None:
        held = self.held()
        if not held:
            return
        # A failure (the database restarting) is logged by Periodic; the lease has slack.
        with self.sessions.begin() as session:
            cancelled = cancelled_jobs(session, job_ids=list(set(held.values())))
            if time.monotonic() - self._renewed_at > self.lease_s / 3:
                renew_leases(
                    session, shard_ids=list(held), worker=self.worker, lease_s=self.lease_s
                )
                self._renewed_at = time.monotonic()
        if cancelled:
            self.on_cancelled(cancelled)
