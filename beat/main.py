"""``farm beat``: the campaign scheduler, the webhook sender and the retention sweep, on
threads of one process.

Run as many as you like: they share their work through Postgres (beat/scheduler.py,
beat/webhook_sender.py, beat/retention.py). In embedded mode ``farm api`` runs the same
threads.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from beat.retention import RetentionLoop
from beat.scheduler import Beat
from beat.webhook_sender import Deliverer
from models.db.session import make_engine, make_session_factory
from models.infra.queue import CeleryPublisher, Publisher, make_celery
from models.infra.settings import Settings
from models.infra.storage import make_storage

log = logging.getLogger("beat.main")


class BeatThreads:
    """The scheduler, the webhook sender and the retention sweep on daemon threads
    (embedded mode, ``farm beat``)."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], publisher: Publisher
    ) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.deliverer = Deliverer(settings, sessions)
        beat = Beat(settings, sessions, publisher)
        retention = RetentionLoop(settings, sessions, make_storage(settings))
        self._threads = [
            threading.Thread(
                target=retention.run, args=(self.stop_event,), name="retention", daemon=True
            ),
            threading.Thread(target=beat.run, args=(self.stop_event,), name="beat", daemon=True),
            threading.Thread(
                target=self.deliverer.run,
                args=(self.stop_event,),
                kwargs={"poll_s": min(1.0, settings.beat_interval_s)},
                name="webhooks",
                daemon=True,
            ),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(self.settings.webhook_timeout_s * 3 + 5)
        self.deliverer.close()


def run_beat(settings: Settings) -> None:
    """``farm beat``: the threads until SIGTERM/SIGINT (logging is set up by ``farm``)."""
    sessions = make_session_factory(
        make_engine(settings.sqlalchemy_url, **settings.engine_kwargs("beat"))
    )
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    threads = BeatThreads(settings, sessions, CeleryPublisher(make_celery(settings)))
    threads.start()
    log.info("beat ready (interval %.2f s)", settings.beat_interval_s)
    try:
        while not stop.wait(1.0):  # wake now and then: signal handlers run in this thread
            pass
    finally:
        threads.stop()
        log.info("beat stopped")
