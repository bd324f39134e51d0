"""When contact sheets are redrawn: at once when a prompt completes, else at most every
interval, and all sheets together within a tenth of the thread's time (a fake clock)."""

from __future__ import annotations

import uuid

from worker.sheets import SheetSchedule

JOB = uuid.uuid4()
A, B = (JOB, 0), (JOB, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drawn(schedule: SheetSchedule, sheet: tuple[uuid.UUID, int], cost_s: float) -> None:
    schedule.drawing(sheet)
    schedule.drawn(sheet, cost_s=cost_s)


def test_a_sheet_is_drawn_at_once_then_at_most_every_interval() -> None:
    clock = Clock()
    schedule = SheetSchedule(2.0, clock)
    assert schedule.wait_s() is None and schedule.due() == []
    schedule.landed(A, complete=False)
    assert schedule.due() == [A]  # never drawn: due now
    drawn(schedule, A, cost_s=0.05)
    assert schedule.due() == [] and schedule.wait_s() is None  # clean

    schedule.landed(A, complete=False)
    clock.now = 101.0
    assert schedule.due() == [] and schedule.wait_s() == 1.0
    assert schedule.due(force=True) == [A]
    clock.now = 102.0
    assert schedule.due() == [A]


def test_the_last_cell_of_a_prompt_makes_its_sheet_due_now_once() -> None:
    clock = Clock()
    schedule = SheetSchedule(2.0, clock)
    schedule.landed(A, complete=False)
    drawn(schedule, A, cost_s=0.05)
    schedule.landed(A, complete=True)
    assert schedule.due() == [A]
    drawn(schedule, A, cost_s=0.05)
    schedule.landed(A, complete=True)  # a late re-render: the ordinary interval again
    assert schedule.due() == []


def test_costly_sheets_share_a_tenth_of_the_thread() -> None:
    clock = Clock()
    schedule = SheetSchedule(2.0, clock)
    for sheet in (A, B):
        schedule.landed(sheet, complete=False)
        drawn(schedule, sheet, cost_s=0.5)
        schedule.landed(sheet, complete=False)
    # Two dirty sheets of 0.5 s each: each waits 10 x 0.5 x 2 = 10 s, not the 2 s interval.
    assert schedule.wait_s() == 10.0
    clock.now = 109.9
    assert schedule.due() == []
    clock.now = 110.0
    assert schedule.due() == [A, B]


def test_a_forgotten_job_has_no_sheets() -> None:
    schedule = SheetSchedule(2.0, Clock())
    schedule.landed(A, complete=False)
    schedule.landed((uuid.uuid4(), 0), complete=False)
    schedule.forget(JOB)
    assert A not in schedule.due() and len(schedule.due()) == 1
