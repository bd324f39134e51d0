"""Embedded mode: an in-process worker thread fed by the in-process queue."""

from __future__ import annotations

import logging
import queue
import threading

from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from worker.reconciler import Reconciler
from worker.runtime import build_runner, close_runner

log = logging.getLogger(__name__)


class EmbeddedWorker:
    """Serves every enabled model (each loaded on first use) from one thread."""

    def __init__(self, settings: Settings, publisher: LocalPublisher) -> None:
        self.publisher = publisher
        self.runner = build_runner(settings, warm_models=[settings.model])
        self.reconciler = Reconciler(
            self.runner.sessions,
            publisher,
            interval_s=settings.reconcile_interval_s,
            models=list(settings.models),  # the embedded worker serves every enabled model
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="embedded-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.reconciler.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.reconciler.stop()
        close_runner(self.runner)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                model, _shard_id = self.publisher.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.runner.run_next(model)
            except Exception:
                log.exception("shard of model %s failed outside the runner", model)
