"""Fire times on a zone's wall clock across daylight-saving time, and backfill ranges."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest

from models.domain.schedule.fire_times import (
    DEFAULT_MAX_BACKFILL,
    backfill_ticks,
    fire_times,
    next_fire,
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


# --- fire times ---------------------------------------------------------------------


def test_restricted_day_of_month_and_week_match_either() -> None:
    # "the 13th, and every Friday" (POSIX/Vixie OR), in 2026-02: Fridays 6, 13, 20, 27.
    got = fires("0 12 13 * 5", ZoneInfo("UTC"), utc(2026, 2, 1), utc(2026, 2, 28, 23))
    assert [d.day for d in got] == [6, 13, 20, 27]
    got = fires("0 12 14 * 5", ZoneInfo("UTC"), utc(2026, 2, 1), utc(2026, 2, 28, 23))
    assert [d.day for d in got] == [6, 13, 14, 20, 27]


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
