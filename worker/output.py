"""A bounded hand-off from the render thread to a writer thread.

The GPU renders batch N+1 while batch N is encoded, uploaded and recorded.
The queue is bounded, so a slow store applies backpressure instead of
filling memory with finished images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from worker.stage import Stage

T = TypeVar("T")


class OutputStage(Stage[T]):
    """One item at a time; ``submit`` blocks while ``depth`` items are already waiting."""

    def __init__(
        self, handle: Callable[[T], None], *, depth: int = 2, name: str = "output"
    ) -> None:
        super().__init__(lambda items: handle(items[0]), name=name, depth=depth)
