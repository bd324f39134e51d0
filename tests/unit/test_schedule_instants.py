"""The times a schedule accepts: IANA zones, aware instants in the years 2000-2999."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from models.domain.schedule.fire_times import backfill_ticks, next_fire
from models.domain.schedule.instants import EARLIEST, LATEST, in_range, input_utc, validate_timezone
from models.domain.schedule.plan import ScheduleState, plan_tick

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def test_timezones() -> None:
    assert validate_timezone("Europe/Berlin") == BERLIN
    for bad in ["Mars/Olympus_Mons", "", "EST5EDT/nope", "../etc/passwd", "Europe/"]:
        with pytest.raises(ValueError, match="unknown time zone") as info:
            validate_timezone(bad)
        assert repr(bad) in str(info.value)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire("@daily", NY, datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),  # to UTC: OverflowError
        datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=14))),
        datetime(2000, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),  # 1999 in UTC
        LATEST,
    ],
)
def test_instants_outside_the_years_2000_to_2999_are_a_value_error_naming_them(
    value: datetime,
) -> None:
    with pytest.raises(ValueError, match=r"^after must lie in the years 2000-2999 \(UTC\)"):
        next_fire("@daily", "UTC", value)
    with pytest.raises(ValueError, match=r"^start must lie in the years 2000-2999"):
        backfill_ticks("@daily", "UTC", value, datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match=r"^end_at must lie in the years 2000-2999"):
        ScheduleState("@daily", "UTC", datetime(2026, 1, 1, tzinfo=UTC), end_at=value)
    with pytest.raises(ValueError, match=r"^now must lie in the years 2000-2999"):
        plan_tick(ScheduleState("@daily", "UTC", EARLIEST), value, campaign_id="c")


def test_the_edges_of_the_range() -> None:
    assert input_utc(EARLIEST, "x") == EARLIEST
    tokyo_new_year = datetime(2000, 1, 1, 9, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert input_utc(tokyo_new_year, "x") == EARLIEST
    last = LATEST - timedelta(microseconds=1)
    assert in_range(last) is last
    assert backfill_ticks("@yearly", "UTC", EARLIEST, datetime(2003, 1, 1, tzinfo=UTC)) == [
        EARLIEST,
        datetime(2001, 1, 1, tzinfo=UTC),
        datetime(2002, 1, 1, tzinfo=UTC),
    ]
    # The last tick of the millennium still plans; jitter and the next tick lie beyond it.
    state = ScheduleState(
        "@yearly", "UTC", datetime(2999, 6, 1, tzinfo=UTC), jitter=timedelta(hours=24)
    )
    plan = plan_tick(state, last, campaign_id="c")
    assert plan.actions == () and plan.next_wakeup is not None
    assert plan.next_wakeup >= LATEST
