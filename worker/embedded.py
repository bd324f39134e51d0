"""Embedded mode: an in-process worker thread fed by the in-process queue."""

from __future__ import annotations

import logging
import queue
import threading

from models.queue import LocalPublisher
from models.settings import Settings
from worker.runtime import build_runner

log = logging.getLogger(__name__)


class EmbeddedWorker:
    def __init__(self, settings: Settings, publisher: LocalPublisher) -> None:
        self.publisher = publisher
        self.runner = build_runner(settings, publisher=publisher, warm_models=[settings.model])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="embedded-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.runner.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                shard_id = self.publisher.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.runner.run(shard_id)
            except Exception:
                log.exception("shard %s failed outside the runner", shard_id)
