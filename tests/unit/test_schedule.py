"""Campaign schedules: cron parsing, DST, and the pure tick planner (frozen clocks only)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest

from models.domain.schedule import (
    DEFAULT_MAX_BACKFILL,
    OverlapPolicy,
    ScheduleState,
    TickAction,
    backfill_ticks,
    fire_times,
    is_interval_schedule,
    jitter_offset,
    next_fire,
    overlap_action,
    parse_schedule,
    plan_tick,
    should_pause,
    validate_timezone,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, sec: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)


def local(
    zone: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, *, fold: int = 0
) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=zone, fold=fold)


def fires(expr: str, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    return list(fire_times(expr, zone, after, until))


def walls(instants: list[datetime], zone: ZoneInfo) -> list[str]:
    return [i.astimezone(zone).strftime("%m-%d %H:%M%z") for i in instants]


# --- parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("30 2 * * *", "30 2 * * *"),
        ("  */15   9-17 * * MON-FRI ", "*/15 9-17 * * mon-fri"),
        ("0 0 1,15 jan,jul *", "0 0 1,15 jan,jul *"),
        ("0 0 * * 7", "0 0 * * 7"),
        ("0 12 13 * 5", "0 12 13 * 5"),
        ("0 0 29 2 *", "0 0 29 2 *"),
        ("0-30/10 * * * *", "0-30/10 * * * *"),
        ("@yearly", "@yearly"),
        ("@ANNUALLY", "@annually"),
        ("@monthly", "@monthly"),
        ("@weekly", "@weekly"),
        ("@daily", "@daily"),
        ("@midnight", "@midnight"),
        ("@hourly", "@hourly"),
    ],
)
def test_valid_expressions_are_normalised(expr: str, normalised: str) -> None:
    assert parse_schedule(expr) == normalised


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("* * * *", "5 fields"),
        ("0 0 * * * *", "seconds and year fields are not supported"),
        ("0 0 0 * * * 2026", "seconds and year fields are not supported"),
        ("garbage", "5 fields"),
        ("a b c d e", "is not a number"),
        ("@reboot", "@reboot is not supported"),
        ("@every_5m", "unknown cron alias"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("0 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("0 0 32 * *", "out of range 1-31"),
        ("0 0 * 13 *", "month field '13': 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("0 0 * foo *", "'foo' is not a number or a three-letter name"),
        ("5-1 * * * *", "range 5-1 is reversed"),
        ("0 0 * * fri-sun", "range fri-sun is reversed (Sunday is also 7)"),
        ("*/0 * * * *", "step must be at least 1"),
        ("*/60 * * * *", "step 60 is larger than the field's span"),
        ("5/10 * * * *", "a step needs a range"),
        ("1,,2 * * * *", "empty list item"),
        ("-1 * * * *", "not a valid cron item"),
        ("0 0 L * *", "extensions such as L"),
        ("0 0 * * 1#2", "not a valid cron item"),
        ("0 0 ? * *", "not a valid cron item"),
        ("H * * * *", "extensions such as L"),
        ("R * * * *", "extensions such as L"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 */2 * 1", "ambiguous day fields"),
    ],
)
def test_invalid_expressions_say_why(expr: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_schedule(expr)


def test_restricted_day_of_month_and_week_match_either() -> None:
    # "the 13th, and every Friday" (POSIX/Vixie OR), in 2026-02: Fridays 6, 13, 20, 27.
    got = fires("0 12 13 * 5", ZoneInfo("UTC"), utc(2026, 2, 1), utc(2026, 2, 28, 23))
    assert [d.day for d in got] == [6, 13, 20, 27]
    got = fires("0 12 14 * 5", ZoneInfo("UTC"), utc(2026, 2, 1), utc(2026, 2, 28, 23))
    assert [d.day for d in got] == [6, 13, 14, 20, 27]


def test_interval_schedules_are_those_with_a_wildcard_hour() -> None:
    assert is_interval_schedule("0 * * * *")
    assert is_interval_schedule("@hourly")
    assert is_interval_schedule("15 */2 * * *")
    assert not is_interval_schedule("30 2 * * *")
    assert not is_interval_schedule("*/15 2 * * *")
    assert not is_interval_schedule("0 0-23 * * *")
    assert not is_interval_schedule("@daily")


def test_timezones() -> None:
    assert validate_timezone("Europe/Berlin") == BERLIN
    for bad in ["Mars/Olympus_Mons", "", "EST5EDT/nope", "../etc/passwd", "Europe/"]:
        with pytest.raises(ValueError, match="unknown time zone") as info:
            validate_timezone(bad)
        assert repr(bad) in str(info.value)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire("@daily", NY, datetime(2026, 1, 1))


# --- fire times ---------------------------------------------------------------------


def test_tokyo_three_am_is_six_pm_utc_the_day_before() -> None:
    got = fires("0 3 * * *", TOKYO, utc(2026, 1, 1), utc(2026, 1, 3))
    assert got == [utc(2026, 1, 1, 18), utc(2026, 1, 2, 18)]
    assert all(d.tzinfo is UTC for d in got)


def test_fire_times_are_strictly_after_and_up_to_until() -> None:
    after = utc(2026, 1, 1, 18)  # exactly a fire time: excluded
    until = utc(2026, 1, 3, 18)  # exactly a fire time: included
    assert fires("0 3 * * *", TOKYO, after, until) == [utc(2026, 1, 2, 18), until]
    assert next_fire("0 3 * * *", "Asia/Tokyo", after) == utc(2026, 1, 2, 18)
    assert next_fire("0 3 * * *", TOKYO, after - timedelta(microseconds=1)) == after
    assert fires("0 3 * * *", TOKYO, until, after) == []


def test_new_york_spring_forward_daily_fires_once_when_the_clock_jumps() -> None:
    # 2026-03-08: 02:00 EST -> 03:00 EDT; 02:30 does not exist.
    got = fires("30 2 * * *", NY, local(NY, 2026, 3, 7), local(NY, 2026, 3, 10))
    assert got == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    assert walls(got, NY) == ["03-07 02:30-0500", "03-08 03:00-0400", "03-09 02:30-0400"]


def test_new_york_fall_back_daily_fires_once_at_the_first_occurrence() -> None:
    # 2026-11-01: 02:00 EDT -> 01:00 EST; 01:30 happens twice.
    got = fires("30 1 * * *", NY, local(NY, 2026, 10, 31), local(NY, 2026, 11, 3))
    assert got == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    # 02:30 is not repeated in New York: an ordinary day.
    got = fires("30 2 * * *", NY, local(NY, 2026, 10, 31), local(NY, 2026, 11, 3))
    assert walls(got, NY) == ["10-31 02:30-0400", "11-01 02:30-0500", "11-02 02:30-0500"]


def test_starting_inside_the_repeated_hour_does_not_fire_the_daily_job_again() -> None:
    second_pass = local(NY, 2026, 11, 1, 1, 10, fold=1)  # 01:10 EST, after 01:30 EDT fired
    assert next_fire("30 1 * * *", NY, second_pass) == utc(2026, 11, 2, 6, 30)
    first_pass = local(NY, 2026, 11, 1, 1, 10)  # 01:10 EDT
    assert next_fire("30 1 * * *", NY, first_pass) == utc(2026, 11, 1, 5, 30)


def test_berlin_daily_0230_across_both_transitions() -> None:
    # Spring 2026-03-29: 02:00 CET -> 03:00 CEST. Fall 2026-10-25: 03:00 CEST -> 02:00 CET.
    spring = fires("30 2 * * *", BERLIN, local(BERLIN, 2026, 3, 28), local(BERLIN, 2026, 3, 31))
    assert spring == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    assert walls(spring, BERLIN)[1] == "03-29 03:00+0200"
    fall = fires("30 2 * * *", BERLIN, local(BERLIN, 2026, 10, 24), local(BERLIN, 2026, 10, 27))
    assert fall == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    assert walls(fall, BERLIN)[1] == "10-25 02:30+0200"  # the first 02:30 (CEST)


def test_a_gap_at_midnight_and_a_thirty_minute_gap() -> None:
    santiago = ZoneInfo("America/Santiago")  # 2026-09-06: 00:00 -04 -> 01:00 -03
    got = fires("@daily", santiago, utc(2026, 9, 5, 12), utc(2026, 9, 7, 12))
    assert walls(got, santiago) == ["09-06 01:00-0300", "09-07 00:00-0300"]
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 2026-10-04: 02:00 +1030 -> 02:30 +11
    got = fires("15 2 * * *", lord_howe, utc(2026, 10, 3, 0), utc(2026, 10, 4, 12))
    assert walls(got, lord_howe) == ["10-04 02:30+1100"]
    got = fires("15 * * * *", lord_howe, utc(2026, 10, 3, 13), utc(2026, 10, 3, 17))
    assert walls(got, lord_howe) == ["10-04 00:15+1030", "10-04 01:15+1030", "10-04 03:15+1100"]


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        (NY, date(2026, 3, 8), 23),
        (NY, date(2026, 11, 1), 25),
        (NY, date(2026, 7, 1), 24),
        (BERLIN, date(2026, 3, 29), 23),
        (BERLIN, date(2026, 10, 25), 25),
    ],
)
def test_hourly_keeps_sixty_minutes_apart_across_dst(
    zone: ZoneInfo, day: date, expected: int
) -> None:
    start = datetime.combine(day, datetime.min.time(), zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
    got = fires("0 * * * *", zone, start - timedelta(microseconds=1), end - timedelta(seconds=1))
    assert len(got) == expected
    assert {b - a for a, b in pairwise(got)} == {timedelta(hours=1)}
    assert got == fires("@hourly", zone, start - timedelta(microseconds=1), got[-1])


def test_hourly_in_new_york_around_the_transitions() -> None:
    fall = fires("30 * * * *", NY, local(NY, 2026, 11, 1, 0, 0), local(NY, 2026, 11, 1, 3, 0))
    assert walls(fall, NY) == [
        "11-01 00:30-0400",
        "11-01 01:30-0400",
        "11-01 01:30-0500",
        "11-01 02:30-0500",
    ]
    spring = fires("30 * * * *", NY, local(NY, 2026, 3, 8, 0, 0), local(NY, 2026, 3, 8, 4, 0))
    assert walls(spring, NY) == ["03-08 00:30-0500", "03-08 01:30-0500", "03-08 03:30-0400"]


def test_interval_schedule_started_in_the_first_pass_still_fires_the_second() -> None:
    first_pass = local(NY, 2026, 11, 1, 1, 30)  # 01:30 EDT = 05:30 UTC
    got = list(islice(fire_times("0 * * * *", NY, first_pass, utc(2026, 11, 2)), 3))
    assert got == [utc(2026, 11, 1, 6), utc(2026, 11, 1, 7), utc(2026, 11, 1, 8)]
    assert walls(got, NY)[0] == "11-01 01:00-0500"


def test_hourly_in_berlin_around_the_transitions() -> None:
    fall = fires("0 * * * *", BERLIN, utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 3))
    assert walls(fall, BERLIN) == [
        "10-25 01:00+0200",
        "10-25 02:00+0200",
        "10-25 02:00+0100",
        "10-25 03:00+0100",
        "10-25 04:00+0100",
    ]
    spring = fires("0 * * * *", BERLIN, utc(2026, 3, 28, 23), utc(2026, 3, 29, 2))
    assert walls(spring, BERLIN) == ["03-29 01:00+0100", "03-29 03:00+0200", "03-29 04:00+0200"]


def test_fixed_hour_times_inside_the_gap_collapse_into_one_fire() -> None:
    got = fires("*/15 2 * * *", NY, local(NY, 2026, 3, 8), local(NY, 2026, 3, 9))
    assert got == [utc(2026, 3, 8, 7)]
    got = fires("0 2,3 * * *", NY, local(NY, 2026, 3, 8), local(NY, 2026, 3, 9))
    assert got == [utc(2026, 3, 8, 7)]  # 02:00 jumps to 03:00, which also is 03:00
    # Every wall label of the fall-back day fires once: 24 fires, a 2-hour hole at 01:00.
    got = fires("0 0-23 * * *", NY, local(NY, 2026, 11, 1), local(NY, 2026, 11, 1, 23, 30))
    assert len(got) == 23  # 00:00 is excluded (strictly after)
    assert got[1] - got[0] == timedelta(hours=2)


@pytest.mark.parametrize(
    ("zone", "expr"),
    [(NY, "30 2 * * *"), (NY, "30 1 * * *"), (BERLIN, "30 2 * * *"), (TOKYO, "0 3 * * *")],
)
def test_a_daily_schedule_fires_once_every_local_day_for_a_year(zone: ZoneInfo, expr: str) -> None:
    got = fires(expr, zone, local(zone, 2026, 1, 1), local(zone, 2027, 1, 1))
    assert len(got) == 365
    per_day = Counter(d.astimezone(zone).date() for d in got)
    assert len(per_day) == 365
    assert set(per_day.values()) == {1}
    assert got == sorted(got)


def test_fires_are_strictly_increasing_through_a_year_of_every_ten_minutes() -> None:
    got = fires("*/10 * * * *", NY, local(NY, 2026, 1, 1), local(NY, 2027, 1, 1))
    assert all(b - a == timedelta(minutes=10) for a, b in pairwise(got))
    assert len(got) == 365 * 24 * 6  # 2026 is no leap year; the DST days cancel out


def test_leap_day_schedule() -> None:
    assert next_fire("0 0 29 2 *", "UTC", utc(2026, 1, 1)) == utc(2028, 2, 29)


# --- backfill -----------------------------------------------------------------------


def test_backfill_is_half_open() -> None:
    got = backfill_ticks("@daily", "UTC", utc(2026, 5, 1), utc(2026, 6, 1))
    assert len(got) == 31
    assert got[0] == utc(2026, 5, 1)
    assert got[-1] == utc(2026, 5, 31)
    june = backfill_ticks("@daily", "UTC", utc(2026, 6, 1), utc(2026, 7, 1))
    assert june[0] == utc(2026, 6, 1)  # consecutive ranges tile
    assert backfill_ticks("@daily", "UTC", utc(2026, 5, 1), utc(2026, 5, 1)) == []


def test_backfill_uses_the_same_dst_rules() -> None:
    got = backfill_ticks("30 2 * * *", NY, local(NY, 2026, 3, 7), local(NY, 2026, 3, 10))
    assert walls(got, NY) == ["03-07 02:30-0500", "03-08 03:00-0400", "03-09 02:30-0400"]


def test_backfill_is_bounded() -> None:
    assert DEFAULT_MAX_BACKFILL == 1000
    got = backfill_ticks("* * * * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 1, 16, 40))
    assert len(got) == 1000
    with pytest.raises(ValueError, match="more than 1000 fire times"):
        backfill_ticks("* * * * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 1, 16, 41))
    with pytest.raises(ValueError, match="more than 10 fire times"):
        backfill_ticks("@hourly", "UTC", utc(2026, 1, 1), utc(2026, 1, 2), max_ticks=10)
    assert len(backfill_ticks("@hourly", "UTC", utc(2026, 1, 1), utc(2026, 1, 2), max_ticks=24))
    with pytest.raises(ValueError, match="after its end"):
        backfill_ticks("@daily", "UTC", utc(2026, 2, 1), utc(2026, 1, 1))


# --- overlap, jitter, pause ---------------------------------------------------------


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


# --- plan_tick ----------------------------------------------------------------------

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
