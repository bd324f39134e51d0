"""The schedule grammar: what a campaign's cron expression may be, and why not."""

from __future__ import annotations

import re

import pytest

from models.domain.schedule.cron import is_interval_schedule, parse_schedule


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


def test_interval_schedules_are_those_with_a_wildcard_hour() -> None:
    assert is_interval_schedule("0 * * * *")
    assert is_interval_schedule("@hourly")
    assert is_interval_schedule("15 */2 * * *")
    assert not is_interval_schedule("30 2 * * *")
    assert not is_interval_schedule("*/15 2 * * *")
    assert not is_interval_schedule("0 0-23 * * *")
    assert not is_interval_schedule("@daily")
