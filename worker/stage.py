"""A daemon thread that handles, in order, what other threads hand it.

Two hand-offs use it: the render thread to the writer (``worker/output.py``) and
the writer to the job-artifacts listener (``worker/job_artifacts.py``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar, cast

log = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()


class Stage(Generic[T]):
    """``handle`` gets the items in order, up to ``max_batch`` at once: those that
    waited while it was busy. ``depth`` > 0 bounds the queue, and ``submit`` blocks
    while it is full (backpressure); 0 never blocks. With ``wait_s``, the thread runs
    ``on_idle`` whenever that many seconds pass with nothing handed over (None: wait)."""

    def __init__(
        self,
        handle: Callable[[list[T]], None],
        *,
        name: str,
        depth: int = 0,
        max_batch: int = 1,
        wait_s: Callable[[], float | None] = lambda: None,
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        self._handle = handle
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._on_idle = on_idle
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        if not self._thread.is_alive():
            raise RuntimeError(f"{self._thread.name} has stopped")
        self._queue.put(item)

    def drain(self) -> None:
        """Wait until everything submitted so far has been handled."""
        self._queue.join()

    def close(self) -> None:
        """Handle what was submitted, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._wait_s())
            except queue.Empty:
                self._run(self._on_idle)
                continue
            taken = [first]
            while taken[-1] is not _STOP and len(taken) < self._max_batch:
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items = cast("list[T]", [item for item in taken if item is not _STOP])
            try:
                if items:
                    self._run(partial(self._handle, items))
            finally:
                for _ in taken:
                    self._queue.task_done()
            if taken[-1] is _STOP:
                return

    def _run(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:  # a handler records its own failures; never kill the thread
            log.exception("%s failed", self._thread.name)
