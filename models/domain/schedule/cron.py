"""The schedule grammar: which cron expressions a campaign accepts (docs/CAMPAIGNS.md).

croniter validates, expands and iterates an expression. This module adds what we
refuse on purpose although croniter would take it, and errors that name the field
and the item at fault (croniter's errors name neither). Refused on purpose:

* seconds or year fields (6 or 7 fields), and ``@reboot``: a campaign's finest
  tick is a minute, and it has no boot;
* the Quartz/Jenkins extensions ``L W # ? H R``: not portable between crons;
* ``n/step`` without a range (croniter reads ``5/10`` as ``5-59/10``), reversed
  ranges (croniter wraps ``5-1`` around the field) and steps wider than the field
  (``*/60`` fires at :00 only): each is a likely mistake;
* days of the month that never occur (``0 0 31 2 *``);
* a ``*/n`` day field beside a restricted other day field: Vixie cron ANDs the two,
  croniter ORs them.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from functools import lru_cache

from croniter import CroniterError, croniter

__all__ = ["Schedule", "compile_schedule", "is_interval_schedule", "parse_schedule"]

_ALIASES = ("@annually", "@daily", "@hourly", "@midnight", "@monthly", "@weekly", "@yearly")
# Spelled out, not calendar.month_abbr: that one follows the process locale.
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field("month", 1, 12, {name: i for i, name in enumerate(_MONTHS, 1)}),
    _Field("day-of-week", 0, 7, {name: i for i, name in enumerate(_WEEKDAYS)}),  # 7: Sunday
)
_ITEM = re.compile(r"^(?:\*|(?P<a>[a-z0-9]+)(?:-(?P<b>[a-z0-9]+))?)(?:/(?P<step>[0-9]+))?$")
_SYNTAX = (
    "use *, n, a-b, */n, a-b/n and lists joined by ','; "
    "extensions such as L, W, #, ?, H and R are not supported"
)


@dataclass(frozen=True)
class Schedule:
    """A validated expression: ``text`` is what croniter iterates (aliases included)."""

    text: str  # normalised: lower case, single spaces, aliases as written
    interval: bool  # hour field is * or */n: DST by elapsed time (docs/CAMPAIGNS.md)


def _value(token: str, field: _Field, where: str) -> int:
    if token.isdigit():
        n = int(token)
    elif token in field.names:
        n = field.names[token]
    else:
        what = "a number or a three-letter name" if field.names else "a number"
        raise ValueError(f"{where}: {token!r} is not {what} ({_SYNTAX})")
    if not field.lo <= n <= field.hi:
        raise ValueError(f"{where}: {n} is out of range {field.lo}-{field.hi}")
    return n


def _check_item(item: str, field: _Field) -> None:
    """Refuse one list item with the reason; croniter then expands what passes."""
    where = f"{field.name} field {item!r}"
    m = _ITEM.match(item)
    if m is None:
        raise ValueError(f"{where}: not a valid cron item ({_SYNTAX})")
    bounds = [_value(t, field, where) for t in (m["a"], m["b"]) if t is not None]
    if len(bounds) == 2 and bounds[1] < bounds[0]:
        hint = " (Sunday is also 7)" if field.hi == 7 and bounds[1] == 0 else ""
        raise ValueError(f"{where}: range {m['a']}-{m['b']} is reversed{hint}")
    if m["step"] is None:
        return
    step = int(m["step"])
    if step < 1:
        raise ValueError(f"{where}: step must be at least 1")
    if len(bounds) == 1:
        raise ValueError(
            f"{where}: a step needs a range; write {m['a']}-{field.hi}/{step} or */{step}"
        )
    if step > field.hi - field.lo:
        raise ValueError(
            f"{where}: step {step} is larger than the field's span {field.lo}-{field.hi}"
        )


def _check_days(parts: list[str], expanded: list[list[int | str]]) -> None:
    dom, dow = parts[2], parts[4]
    if dom != "*" and dow != "*" and (dom.startswith("*") or dow.startswith("*")):
        raise ValueError(
            f"ambiguous day fields {dom!r} and {dow!r}: cron implementations "
            "disagree whether a '*/n' day field combines with the other by AND or OR; "
            "write the days explicitly"
        )
    days, months = expanded[2], expanded[3]
    if dow != "*" or "*" in days or "*" in months:
        return  # some day of some month matches
    # 2024 is a leap year: 29 February occurs.
    if all(int(d) > calendar.monthrange(2024, int(m))[1] for m in months for d in days):
        raise ValueError(
            f"the schedule never fires: day(s) {_fmt(days)} do not occur in month(s) {_fmt(months)}"
        )


def _fmt(values: list[int | str]) -> str:
    return ",".join(str(v) for v in values)


@lru_cache(maxsize=1024)
def compile_schedule(expr: str) -> Schedule:
    """Validate a 5-field cron expression or an alias (ValueError with the reason)."""
    if not isinstance(expr, str):
        raise ValueError("a cron expression must be a string")
    text = " ".join(expr.split()).lower()
    if not text:
        raise ValueError("empty cron expression")
    if text.startswith("@"):
        if text == "@reboot":
            raise ValueError("@reboot is not supported: a campaign has no boot; use a time")
        if text not in _ALIASES:
            raise ValueError(f"unknown cron alias {text!r}; use one of {', '.join(_ALIASES)}")
        return Schedule(text, interval=text == "@hourly")
    parts = text.split(" ")
    if len(parts) != 5:
        extra = " (seconds and year fields are not supported)" if len(parts) in (6, 7) else ""
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(parts)}{extra}"
        )
    for part, field in zip(parts, _FIELDS, strict=True):
        for item in part.split(","):
            if not item:
                raise ValueError(f"{field.name} field {part!r}: empty list item")
            _check_item(item, field)
    try:
        expanded, _nth = croniter.expand(text)
    except CroniterError as exc:  # a gap between the checks above and croniter's grammar
        raise ValueError(f"invalid cron expression {text!r}: {exc}") from exc
    _check_days(parts, expanded)
    return Schedule(text, interval=parts[1].startswith("*"))


def parse_schedule(expr: str) -> str:
    """A valid expression normalised: lower case, single spaces, aliases as written."""
    return compile_schedule(expr).text


def is_interval_schedule(expr: str) -> bool:
    """True when the hour field is ``*`` or ``*/n``: DST is handled by elapsed time."""
    return compile_schedule(expr).interval
