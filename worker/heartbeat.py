"""The worker's pulse: keep leases on held shards, notice cancelled jobs quickly."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from models.shard_store import cancelled_jobs, renew_leases

log = logging.getLogger(__name__)


class Heartbeat:
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
        self.interval_s = interval_s
        self.held = held
        self.on_cancelled = on_cancelled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        renewed_at = 0.0
        while not self._stop.wait(self.interval_s):
            held = self.held()
            if not held:
                continue
            try:
                with self.sessions.begin() as session:
                    cancelled = cancelled_jobs(session, job_ids=list(set(held.values())))
                    if time.monotonic() - renewed_at > self.lease_s / 3:
                        renew_leases(
                            session, shard_ids=list(held), worker=self.worker, lease_s=self.lease_s
                        )
                        renewed_at = time.monotonic()
            except Exception:  # the database may be restarting; the lease has slack
                log.exception("heartbeat failed")
                continue
            if cancelled:
                self.on_cancelled(cancelled)
