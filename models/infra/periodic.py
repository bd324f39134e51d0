"""A daemon thread that runs one step every ``interval_s`` until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """``step`` runs every ``interval_s``; an exception is logged and the loop goes on
    (a database restart must not end a heartbeat or a reconciler)."""

    def __init__(
        self, step: Callable[[], None], *, interval_s: float, name: str, run_first: bool = False
    ) -> None:
        self.step = step
        self.interval_s = interval_s
        self.run_first = run_first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        if not self.run_first and self._stop.wait(self.interval_s):
            return
        while True:
            try:
                self.step()
            except Exception:
                log.exception(
                    "%s failed; trying again in %.1f s", self._thread.name, self.interval_s
                )
            if self._stop.wait(self.interval_s):
                return
