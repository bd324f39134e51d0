"""The hand-off thread under the writer and the artifacts listener: order, batches,
backpressure, idle work, failures and shutdown."""

from __future__ import annotations

import threading

import pytest

from worker.output import OutputStage
from worker.stage import Stage

WAIT_S = 30  # a bound on waiting for a condition, never a duration the test measures


class Gated:
    """A handler that records batches; the first one waits until ``release``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> None:
        self.started.set()
        assert self.release.wait(WAIT_S)
        self.batches.append(items)


@pytest.mark.parametrize(
    ("max_batch", "after_first"), [(64, [[2, 3, 4, 5]]), (2, [[2, 3], [4, 5]])]
)
def test_items_that_waited_are_handled_together_in_order(
    max_batch: int, after_first: list[list[int]]
) -> None:
    handler = Gated()
    stage: Stage[int] = Stage(handler, name="test-stage", max_batch=max_batch)
    stage.submit(1)
    assert handler.started.wait(WAIT_S)  # the thread holds item 1
    for item in (2, 3, 4, 5):
        stage.submit(item)
    handler.release.set()
    stage.drain()
    assert handler.batches == [[1], *after_first]
    stage.close()


def test_a_bounded_stage_blocks_the_submitter_while_full() -> None:
    handled: list[int] = []
    gate = threading.Event()
    busy = threading.Event()

    def handle(item: int) -> None:
        busy.set()
        assert gate.wait(WAIT_S)
        handled.append(item)

    stage: OutputStage[int] = OutputStage(handle, depth=1, name="test-output")
    stage.submit(1)
    assert busy.wait(WAIT_S)  # item 1 is being handled: the queue is empty
    stage.submit(2)  # fills it
    submitter = threading.Thread(target=stage.submit, args=(3,))
    submitter.start()
    submitter.join(timeout=0.2)
    assert submitter.is_alive()  # still blocked: nothing was taken since
    gate.set()
    submitter.join(WAIT_S)
    assert not submitter.is_alive()
    stage.close()
    assert handled == [1, 2, 3]


def test_a_failing_batch_does_not_stop_the_thread() -> None:
    handled: list[int] = []

    def handle(items: list[int]) -> None:
        if items == [1]:
            raise ValueError("broken item")
        handled.extend(items)

    stage: Stage[int] = Stage(handle, name="test-failing")
    stage.submit(1)
    stage.submit(2)
    stage.drain()
    assert handled == [2]
    stage.close()


def test_idle_work_runs_when_nothing_arrives_in_time() -> None:
    idle = threading.Event()
    stage: Stage[int] = Stage(
        lambda items: None, name="test-idle", wait_s=lambda: 0.01, on_idle=idle.set
    )
    assert idle.wait(WAIT_S)
    stage.close()


def test_close_handles_what_was_submitted_then_refuses_more() -> None:
    handler = Gated()
    stage: Stage[int] = Stage(handler, name="test-close", max_batch=64)
    stage.submit(1)
    assert handler.started.wait(WAIT_S)
    stage.submit(2)
    handler.release.set()
    stage.close()
    assert handler.batches == [[1], [2]]
    with pytest.raises(RuntimeError, match="test-close has stopped"):
        stage.submit(3)
    stage.close()  # twice: nothing happens
