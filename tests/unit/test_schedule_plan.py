"""The pure tick planner: catch-up, coalescing, overlap, end, pause, jitter (frozen clocks)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from models.domain.schedule.plan import ScheduleState, TickAction, plan_tick
from models.domain.schedule.policies import OverlapPolicy, jitter_offset


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, sec: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)


HOURLY = "0 * * * *"
CREATED = utc(2026, 1, 1)


def state(**changes: object) -> ScheduleState:
    base: dict[str, object] = {"expr": HOURLY, "tz": "UTC", "created_at": CREATED}
    base.update(changes)
    return ScheduleState(**base)  # type: ignore[arg-type]


def kinds(actions: tuple[TickAction, ...]) -> list[tuple[datetime, str]]:
    return [(a.scheduled_for, a.action) for a in actions]


def test_nothing_is_due_before_the_first_tick() -> None:
    plan = plan_tick(state(), utc(2026, 1, 1, 0, 59), campaign_id="c")
    assert plan.actions == ()
    assert plan.next_wakeup == utc(2026, 1, 1, 1)
    assert plan.last_scheduled_for is None
    assert not plan.exhausted
    assert not plan.more


def test_a_due_tick_starts_and_moves_the_watermark() -> None:
    plan = plan_tick(state(), utc(2026, 1, 1, 1, 0, 2), campaign_id="c")
    assert kinds(plan.actions) == [(utc(2026, 1, 1, 1), "start")]
    assert plan.actions[0].fire_at == utc(2026, 1, 1, 1)
    assert plan.last_scheduled_for == utc(2026, 1, 1, 1)
    assert plan.next_wakeup == utc(2026, 1, 1, 2)
    # Recorded: the same tick is not planned again.
    again = plan_tick(
        state(last_scheduled_for=plan.last_scheduled_for), utc(2026, 1, 1, 1, 30), campaign_id="c"
    )
    assert again.actions == ()


def test_the_creation_time_bounds_the_first_tick() -> None:
    plan = plan_tick(
        state(created_at=utc(2026, 1, 1, 1)), utc(2026, 1, 1, 1, 0, 1), campaign_id="c"
    )
    assert plan.actions == ()  # created exactly at 01:00: that tick is not due


@pytest.mark.parametrize(
    ("policy", "running", "buffered", "expected"),
    [
        (OverlapPolicy.SKIP, 1, 0, "skip_overlap"),
        (OverlapPolicy.BUFFER_ONE, 1, 0, "buffer"),
        (OverlapPolicy.BUFFER_ONE, 1, 1, "skip_overlap"),
        (OverlapPolicy.BUFFER_ALL, 1, 3, "buffer"),
        (OverlapPolicy.CANCEL_OTHER, 1, 0, "cancel_other_then_start"),
        (OverlapPolicy.ALLOW_ALL, 4, 0, "start"),
        (OverlapPolicy.SKIP, 0, 0, "start"),
    ],
)
def test_plan_applies_the_overlap_policy(
    policy: OverlapPolicy, running: int, buffered: int, expected: str
) -> None:
    s = state(
        overlap=policy,
        running_runs=running,
        buffered=buffered,
        last_scheduled_for=utc(2026, 1, 1, 4),
    )
    plan = plan_tick(s, utc(2026, 1, 1, 5, 0, 1), campaign_id="c")
    assert kinds(plan.actions) == [(utc(2026, 1, 1, 5), expected)]


def test_missed_ticks_inside_the_window_coalesce_to_the_latest() -> None:
    # Scheduler down from 01:00 to 05:30; window 3h: 02:00 is the oldest tick inside.
    s = state(last_scheduled_for=utc(2026, 1, 1, 1), catchup_window=timedelta(hours=3))
    plan = plan_tick(s, utc(2026, 1, 1, 5, 30), campaign_id="c")
    assert kinds(plan.actions) == [
        (utc(2026, 1, 1, 2), "skip_missed"),
        (utc(2026, 1, 1, 3), "skip_coalesced"),
        (utc(2026, 1, 1, 4), "skip_coalesced"),
        (utc(2026, 1, 1, 5), "start"),
    ]
    assert plan.last_scheduled_for == utc(2026, 1, 1, 5)
    assert plan.next_wakeup == utc(2026, 1, 1, 6)


def test_ticks_older_than_the_window_are_recorded_missed_not_run() -> None:
    s = state(last_scheduled_for=utc(2026, 1, 1, 1), catchup_window=timedelta(minutes=10))
    plan = plan_tick(s, utc(2026, 1, 1, 3, 30), campaign_id="c")
    assert kinds(plan.actions) == [
        (utc(2026, 1, 1, 2), "skip_missed"),
        (utc(2026, 1, 1, 3), "skip_missed"),
    ]
    assert plan.last_scheduled_for == utc(2026, 1, 1, 3)


def test_without_coalescing_each_tick_goes_through_the_overlap_policy() -> None:
    s = state(
        last_scheduled_for=utc(2026, 1, 1, 1), coalesce=False, overlap=OverlapPolicy.BUFFER_ONE
    )
    plan = plan_tick(s, utc(2026, 1, 1, 4, 30), campaign_id="c")
    assert [a.action for a in plan.actions] == ["start", "buffer", "skip_overlap"]
    s = state(
        last_scheduled_for=utc(2026, 1, 1, 1), coalesce=False, overlap=OverlapPolicy.BUFFER_ALL
    )
    plan = plan_tick(s, utc(2026, 1, 1, 4, 30), campaign_id="c")
    assert [a.action for a in plan.actions] == ["start", "buffer", "buffer"]
    s = state(last_scheduled_for=utc(2026, 1, 1, 1), coalesce=False, overlap="allow_all")
    plan = plan_tick(s, utc(2026, 1, 1, 4, 30), campaign_id="c")
    assert [a.action for a in plan.actions] == ["start", "start", "start"]


def test_end_at_stops_the_schedule() -> None:
    s = state(last_scheduled_for=utc(2026, 1, 1, 1), end_at=utc(2026, 1, 1, 3))
    plan = plan_tick(s, utc(2026, 1, 1, 5, 30), campaign_id="c")
    # 02:00 is coalesced into 03:00 (the last tick at or before end_at); 04:00 and
    # 05:00 are past the end and never planned.
    assert kinds(plan.actions) == [
        (utc(2026, 1, 1, 2), "skip_coalesced"),
        (utc(2026, 1, 1, 3), "start"),
    ]
    assert plan.exhausted
    assert plan.next_wakeup is None
    after = plan_tick(
        state(last_scheduled_for=utc(2026, 1, 1, 3), end_at=utc(2026, 1, 1, 3)),
        utc(2026, 1, 1, 9),
        campaign_id="c",
    )
    assert after.actions == ()
    assert after.exhausted
    before = plan_tick(s, utc(2026, 1, 1, 1, 30), campaign_id="c")
    assert not before.exhausted
    assert before.next_wakeup == utc(2026, 1, 1, 2)


@pytest.mark.parametrize("paused", [{"enabled": False}, {"paused_by_failure": True}])
def test_a_paused_schedule_plans_nothing(paused: dict[str, bool]) -> None:
    s = state(last_scheduled_for=utc(2026, 1, 1, 1), **paused)
    plan = plan_tick(s, utc(2026, 1, 2), campaign_id="c")
    assert plan.actions == ()
    assert plan.next_wakeup is None
    assert plan.last_scheduled_for == utc(2026, 1, 1, 1)


def test_ticks_missed_while_paused_are_not_caught_up_on_resume() -> None:
    # Paused after the 01:00 tick, resumed at 05:10: 02:00-05:00 are neither run nor recorded.
    s = state(last_scheduled_for=utc(2026, 1, 1, 1), resumed_at=utc(2026, 1, 1, 5, 10))
    assert plan_tick(s, utc(2026, 1, 1, 5, 11), campaign_id="c").actions == ()
    plan = plan_tick(s, utc(2026, 1, 1, 6, 0, 1), campaign_id="c")
    assert kinds(plan.actions) == [(utc(2026, 1, 1, 6), "start")]


def test_jitter_delays_the_start_deterministically() -> None:
    s = state(jitter=timedelta(minutes=10), last_scheduled_for=utc(2026, 1, 1, 4))
    tick = utc(2026, 1, 1, 5)
    fire_at = tick + jitter_offset("camp-1", tick, timedelta(minutes=10))
    assert tick < fire_at < tick + timedelta(minutes=10)
    early = plan_tick(s, fire_at - timedelta(microseconds=1), campaign_id="camp-1")
    assert early.actions == ()
    assert early.next_wakeup == fire_at
    plan = plan_tick(s, fire_at, campaign_id="camp-1")
    assert plan.actions == (TickAction(scheduled_for=tick, action="start", fire_at=fire_at),)
    # A second scheduler process computes the very same plan.
    assert plan_tick(s, fire_at, campaign_id="camp-1") == plan


def test_jitter_never_pushes_a_tick_past_the_next_one() -> None:
    s = state(expr="* * * * *", jitter=timedelta(hours=1), last_scheduled_for=utc(2026, 1, 1))
    plan = plan_tick(s, utc(2026, 1, 1, 1), campaign_id="c", max_actions=100)
    fire_ats = [a.fire_at for a in plan.actions]
    assert fire_ats == sorted(fire_ats)
    assert all(
        timedelta(0) <= a.fire_at - a.scheduled_for < timedelta(minutes=1) for a in plan.actions
    )


def test_plans_are_paged() -> None:
    # A year of hourly ticks after an outage: pages of 100, every tick recorded once.
    s = state(
        last_scheduled_for=utc(2025, 1, 1),
        created_at=utc(2025, 1, 1),
        catchup_window=timedelta(hours=12),
    )
    now = utc(2026, 1, 1, 0, 30)
    seen: list[TickAction] = []
    for _ in range(100):
        plan = plan_tick(s, now, campaign_id="c", max_actions=100)
        seen.extend(plan.actions)
        s = replace(s, last_scheduled_for=plan.last_scheduled_for)
        if not plan.more:
            break
        assert plan.next_wakeup == now
    assert len(seen) == 365 * 24
    counts = Counter(a.action for a in seen)
    assert counts == {"skip_missed": 365 * 24 - 12, "skip_coalesced": 11, "start": 1}
    assert seen[-1] == TickAction(utc(2026, 1, 1), "start", utc(2026, 1, 1))


def test_plan_tick_over_the_dst_gap_in_new_york() -> None:
    s = state(expr="30 2 * * *", tz="America/New_York", last_scheduled_for=utc(2026, 3, 7, 7, 30))
    assert plan_tick(s, utc(2026, 3, 8, 6, 59), campaign_id="c").next_wakeup == utc(2026, 3, 8, 7)
    plan = plan_tick(s, utc(2026, 3, 8, 7, 0, 5), campaign_id="c")
    assert kinds(plan.actions) == [(utc(2026, 3, 8, 7), "start")]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"expr": "@reboot"}, "@reboot"),
        ({"tz": "Nowhere/City"}, "unknown time zone"),
        ({"created_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"catchup_window": timedelta(seconds=5)}, "catchup_window"),
        ({"jitter": timedelta(seconds=-1)}, "jitter"),
        ({"running_runs": -1}, "negative"),
        ({"overlap": "sometimes"}, "sometimes"),
    ],
)
def test_schedule_state_is_validated(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        state(**changes)


def test_plan_tick_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_tick(state(), datetime(2026, 1, 1, 5), campaign_id="c")
