"""Overlap, jitter and pause-on-failure: what a tick does beside its fire time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from models.domain.schedule.plan import ScheduleState
from models.domain.schedule.policies import (
    OverlapPolicy,
    jitter_offset,
    overlap_action,
    should_pause,
)

NY = ZoneInfo("America/New_York")


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, sec: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)


@pytest.mark.parametrize(
    ("policy", "running", "buffered", "expected"),
    [
        (OverlapPolicy.SKIP, 0, 0, "start"),
        (OverlapPolicy.SKIP, 1, 0, "skip_overlap"),
        (OverlapPolicy.BUFFER_ONE, 0, 0, "start"),
        (OverlapPolicy.BUFFER_ONE, 1, 0, "buffer"),
        (OverlapPolicy.BUFFER_ONE, 1, 1, "skip_overlap"),
        (OverlapPolicy.BUFFER_ONE, 0, 1, "skip_overlap"),
        (OverlapPolicy.BUFFER_ALL, 0, 0, "start"),
        (OverlapPolicy.BUFFER_ALL, 1, 0, "buffer"),
        (OverlapPolicy.BUFFER_ALL, 1, 5, "buffer"),
        (OverlapPolicy.CANCEL_OTHER, 0, 0, "start"),
        (OverlapPolicy.CANCEL_OTHER, 2, 0, "cancel_other_then_start"),
        (OverlapPolicy.ALLOW_ALL, 0, 0, "start"),
        (OverlapPolicy.ALLOW_ALL, 3, 0, "start"),
    ],
)
def test_overlap_action(policy: OverlapPolicy, running: int, buffered: int, expected: str) -> None:
    assert overlap_action(policy, running_runs=running, buffered=buffered) == expected


def test_overlap_policy_values() -> None:
    assert [p.value for p in OverlapPolicy] == [
        "skip",
        "buffer_one",
        "buffer_all",
        "cancel_other",
        "allow_all",
    ]
    assert ScheduleState("@daily", "UTC", utc(2026, 1, 1)).overlap is OverlapPolicy.SKIP


def test_jitter_is_deterministic_and_bounded() -> None:
    tick = utc(2026, 3, 8, 7)
    jitter = timedelta(minutes=5)
    offsets = {jitter_offset(f"campaign-{i}", tick, jitter) for i in range(500)}
    assert all(timedelta(0) <= o < jitter for o in offsets)
    assert len(offsets) > 450  # spread, not constant
    assert max(offsets) > timedelta(minutes=4)
    assert min(offsets) < timedelta(minutes=1)
    again = jitter_offset("campaign-7", tick.astimezone(NY), jitter)  # same instant
    assert again == jitter_offset("campaign-7", tick, jitter)
    assert jitter_offset("campaign-7", tick + timedelta(days=1), jitter) != again
    assert jitter_offset("campaign-7", tick, timedelta(0)) == timedelta(0)
    assert jitter_offset("c", tick, timedelta(microseconds=1)) == timedelta(0)
    with pytest.raises(ValueError, match="negative"):
        jitter_offset("c", tick, timedelta(seconds=-1))


def test_should_pause_only_on_failed_runs() -> None:
    assert should_pause(True, "failed")
    assert not should_pause(True, "partial")
    assert not should_pause(True, "succeeded")
    assert not should_pause(True, "cancelled")
    assert not should_pause(False, "failed")
    with pytest.raises(ValueError, match="not final"):
        should_pause(True, "running")
    with pytest.raises(ValueError, match="unknown run status"):
        should_pause(True, "exploded")
