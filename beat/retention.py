"""The retention thread of ``farm beat``: a sweep every ``FARM_RETENTION_SWEEP_INTERVAL_S``
(models/service/retention.py: expire, empty deleted folders, encrypt old secrets), and
before it the settle of jobs whose finisher died between its finish and the settle
(models/db/finish_committed.py): one process, every 30 s, not every worker's reconciler,
since it reads every open job."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from models.db.finish_committed import settle_complete_jobs
from models.db.running_counts import sweep_idle_counts
from models.infra.settings import Settings
from models.infra.storage import Storage
from models.service.retention import RetentionSweep

log = logging.getLogger(__name__)


class RetentionLoop:
    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], storage: Storage
    ) -> None:
        self.interval_s = settings.retention_sweep_interval_s
        self.sweeper = RetentionSweep(settings, sessions, storage)
        self.sessions = sessions

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with self.sessions.begin() as session:
                    if settled := settle_complete_jobs(session):
                        log.warning("settled %d complete job(s) left open", settled)
                    sweep_idle_counts(session)
                result = self.sweeper.sweep()
                if result.expired_jobs or result.deleted_objects:
                    log.info(
                        "retention: %d job(s) expired, %d object(s) deleted from %d folder(s)",
                        result.expired_jobs,
                        result.deleted_objects,
                        result.emptied_folders,
                    )
            except Exception:  # the database or the store is away: the next pass retries
                log.exception("retention sweep failed")
            stop.wait(self.interval_s)
