"""A bounded hand-off from the render thread to a writer thread.

The GPU renders batch N+1 while batch N is encoded, uploaded and recorded.
The queue is bounded, so a slow store applies backpressure instead of
filling memory with finished images.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()


class OutputStage(Generic[T]):
    def __init__(
        self, handle: Callable[[T], None], *, depth: int = 2, name: str = "output"
    ) -> None:
        self._handle = handle
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        """Blocks while ``depth`` items are already waiting."""
        if not self._thread.is_alive():
            raise RuntimeError("output stage has stopped")
        self._queue.put(item)

    def drain(self) -> None:
        """Wait until everything submitted so far has been handled."""
        self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._handle(item)  # type: ignore[arg-type]
            except Exception:  # the handler records its own failures; never kill the thread
                log.exception("output stage handler failed")
            finally:
                self._queue.task_done()
