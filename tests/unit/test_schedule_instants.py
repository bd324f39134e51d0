"""The times a schedule accepts: IANA zones and aware instants."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from models.domain.schedule.fire_times import next_fire
from models.domain.schedule.instants import validate_timezone

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
