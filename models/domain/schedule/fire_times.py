"""When a schedule fires: cron fields matched on a zone's wall clock, resolved to instants.

How daylight-saving time is resolved (fixed-hour schedules fire once per wall time,
interval schedules keep their cadence in elapsed time) is explained in
docs/CAMPAIGNS.md, "Schedules and daylight-saving time".
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from croniter import croniter

from models.domain.schedule.cron import Schedule, compile_schedule
from models.domain.schedule.instants import input_utc, zone

__all__ = ["DEFAULT_MAX_BACKFILL", "backfill_ticks", "fire_times", "fires", "next_fire"]

DEFAULT_MAX_BACKFILL = 1000


@dataclass(frozen=True)
class _Wall:
    """How one local wall-clock time maps onto instants."""

    first: datetime | None  # the instant (first occurrence when ambiguous); None in a gap
    second: datetime | None  # second occurrence when the wall time is repeated
    gap_end: datetime | None  # when the wall time is skipped: the instant of the jump


def _resolve(wall: datetime, tz: ZoneInfo) -> _Wall:
    a = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    b = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if a == b:
        return _Wall(a, None, None)
    if a < b:  # repeated: fold=0 is the first occurrence
        return _Wall(a, b, None)
    # Skipped (PEP 495: fold=0 reads it with the offset before the jump, giving the
    # later instant). The jump lies in (b, a]: find it to the second.
    lo, hi = int(b.timestamp()), int(a.timestamp())
    before = b.astimezone(tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return _Wall(None, None, datetime.fromtimestamp(hi, UTC))


def _walls(text: str, start: datetime) -> Iterator[datetime]:
    """Matching naive wall-clock times at or after ``start`` (naive), in order."""
    floor = start.replace(second=0, microsecond=0)
    it = croniter(text, floor - timedelta(seconds=1))
    while True:
        yield cast(datetime, it.get_next(datetime))


def fires(schedule: Schedule, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants strictly after ``after`` (aware UTC), ascending, endless."""
    local = after.astimezone(tz)
    start = local.replace(tzinfo=None)
    here = _resolve(start, tz)
    if local.fold == 0 and here.first is not None and here.second is not None:
        # ``after`` is in the first pass of a repeated hour: second occurrences of
        # earlier wall times still lie ahead.
        start -= here.second - here.first
    pending: list[datetime] = []  # second occurrences waiting for their turn
    last: datetime | None = None
    for wall in _walls(schedule.text, start):
        r = _resolve(wall, tz)
        if schedule.interval:
            primary = r.first
            if r.second is not None:
                heapq.heappush(pending, r.second)
        else:
            primary = r.first if r.first is not None else r.gap_end
        if primary is None:
            continue
        while pending and pending[0] <= primary:
            instant = heapq.heappop(pending)
            if instant > after and (last is None or instant > last):
                last = instant
                yield instant
        if primary > after and (last is None or primary > last):
            last = primary
            yield primary


def fire_times(
    expr: str, tz: ZoneInfo | str, after: datetime, until: datetime
) -> Iterator[datetime]:
    """Fire instants (aware, UTC) strictly after ``after`` and at or before ``until``.

    Lazy: iterate it, don't ``list()`` a minutely schedule over years.
    """
    schedule = compile_schedule(expr)
    tzinfo = zone(tz)
    start = input_utc(after, "after")
    end = input_utc(until, "until")
    for instant in fires(schedule, tzinfo, start):
        if instant > end:
            return
        yield instant


def next_fire(expr: str, tz: ZoneInfo | str, after: datetime) -> datetime:
    """The first fire instant (aware, UTC) strictly after ``after``."""
    return next(fires(compile_schedule(expr), zone(tz), input_utc(after, "after")))


def backfill_ticks(
    expr: str,
    tz: ZoneInfo | str,
    start: datetime,
    end: datetime,
    *,
    max_ticks: int = DEFAULT_MAX_BACKFILL,
) -> list[datetime]:
    """Fire instants in ``[start, end)`` for the backfill endpoint.

    Half-open so that consecutive backfills tile without overlap (Temporal's API
    takes ``(start, end]``). Raises ValueError when ``start > end`` or when the
    range holds more than ``max_ticks`` fire times (nothing is rendered then).
    """
    schedule = compile_schedule(expr)
    tzinfo = zone(tz)
    lo, hi = input_utc(start, "start"), input_utc(end, "end")
    if lo > hi:
        raise ValueError(f"backfill start {lo.isoformat()} is after its end {hi.isoformat()}")
    if max_ticks < 1:
        raise ValueError("max_ticks must be at least 1")
    ticks: list[datetime] = []
    for instant in fires(schedule, tzinfo, lo - timedelta(microseconds=1)):
        if instant >= hi:
            break
        if len(ticks) == max_ticks:
            raise ValueError(
                f"the backfill range holds more than {max_ticks} fire times; "
                "split it into smaller ranges"
            )
        ticks.append(instant)
    return ticks
