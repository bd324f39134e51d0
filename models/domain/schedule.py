"""Campaign schedules: cron parsing, fire times across DST, and the scheduler's tick decision.

Everything here is pure: no database, no clock. Each function takes the times it
needs (``now``, ``after``, ...) so tests drive it with frozen datetimes. Returned
instants are aware datetimes in UTC.

Semantics follow Temporal's Schedules (overlap policy, catchup window, pause on
failure, jitter, backfill); the differences are stated where they occur.

Cron syntax
-----------
Five fields, ``minute hour day-of-month month day-of-week``, each a list of
``*``, ``*/step``, ``n``, ``a-b`` or ``a-b/step``; months and weekdays also take
three-letter English names (``jan``, ``mon-fri``); weekday 0 and 7 are Sunday.
The aliases ``@yearly @annually @monthly @weekly @daily @midnight @hourly`` are
accepted. Rejected with a reason: seconds or year fields (6 or 7 fields),
``@reboot``, reversed ranges (``5-1``), ``n/step`` without a range, Quartz/Jenkins
extensions (``L W # ? H R``), steps wider than the field (``*/60``), and day-of-month
sets that never occur (``0 0 31 2 *``). When day-of-month and day-of-week are both
restricted a day matches if either matches (POSIX, Vixie, croniter); the one
case where cron implementations disagree (one of the two written as ``*/n``:
Vixie ANDs, croniter ORs) is rejected as ambiguous.

Time zones and daylight-saving time
-----------------------------------
Cron fields are matched against the campaign's local wall clock (an IANA zone).
Two kinds of schedule are told apart by the hour field, as Vixie cron/cronie
tell fixed-time jobs from wildcard jobs:

* **Fixed-hour schedules** (the hour field is not ``*`` or ``*/n``; e.g.
  ``30 2 * * *``, ``@daily``): every matching wall-clock time fires exactly once.

  - Spring forward: a wall time inside the gap (02:30 in America/New_York on
    2026-03-08, which never shows on a clock) fires once, at the instant the clock
    jumps over it: 03:00 EDT = 07:00 UTC (cronie/Vixie run skipped fixed-time jobs
    right after the jump too). Several gap times (``*/15 2 * * *``) collapse into
    that one fire.
  - Fall back: a wall time that occurs twice (01:30 on 2026-11-01 in New York)
    fires once, at its first occurrence (01:30 EDT = 05:30 UTC).

  So a daily campaign renders exactly once every local day, 365 times a year.

* **Interval schedules** (the hour field is ``*`` or ``*/n``; e.g.
  ``0 * * * *``, ``@hourly``, ``*/10 * * * *``): they fire at every real instant
  whose local wall-clock time matches, so the cadence in elapsed time is kept.

  - Fall back: the repeated hour fires twice (01:00 EDT and 01:00 EST), as in
    Vixie cron, so an hourly campaign renders 25 times that day, 60 minutes apart.
  - Spring forward: wall times inside the gap never happen and do not fire (01:30
    EST is followed by 03:30 EDT, 60 minutes later); 23 renders that day.

  Why: a campaign written with a wildcard hour means "every N minutes/hours",
  and renders exactly 60 minutes apart are the least surprising outcome (no
  two-hour hole in the fall, no bunched 03:00 + 03:30 in spring). A campaign that
  must render once per wall-clock label lists its hours (``0 0-23 * * *``).
  Unlike cronie, only the hour field decides: ``*/15 2 * * *`` is fixed-hour
  ("during the 2 o'clock hour"), so on spring-forward day it still renders once
  (at 03:00) instead of not at all.

Tick planning (``plan_tick``)
-----------------------------
A tick is a fire time (``scheduled_for``, the nominal time). Its ``fire_at`` adds
a deterministic jitter in ``[0, min(jitter, next tick - tick))``: a hash of
(campaign id, tick), so every scheduler process computes the same instant, and
capped like Temporal so jitter never reorders ticks. A tick is due once
``fire_at <= now``. Due ticks are those after the watermark: the latest of
``created_at``, ``last_scheduled_for`` and ``resumed_at``.

* A due tick whose ``fire_at`` is older than ``now - catchup_window`` is recorded
  ``skip_missed`` (never dropped silently).
* Inside the window, with ``coalesce`` (the default) only the latest due tick
  acts; the older ones are recorded ``skip_coalesced``: after an outage a
  campaign renders once, for its most recent slot, not once per missed slot.
  With ``coalesce=False`` each tick acts in turn, as in Temporal.
* The acting tick goes through the overlap policy (``overlap_action``), counting
  runs still rendering and runs already buffered.
* Ticks after ``end_at`` are not planned; the plan says ``exhausted``.
* A disabled or failure-paused schedule plans nothing. Ticks that fall while it is
  paused are not caught up nor recorded on resume (as in Temporal): the caller
  sets ``resumed_at`` when it resumes. Use a backfill to render them.
* At most ``max_actions`` actions come back at once; ``more`` then asks the caller
  to record them and call again.

Pause on failure (``should_pause``): only a run that ended ``failed`` pauses a
schedule. ``partial`` does not: some cells rendered, the failed ones can be
retried, and one bad prompt should not stop a whole campaign; ``cancelled`` does
not either (a person, or ``cancel_other``, chose it).
"""

from __future__ import annotations

import calendar
import hashlib
import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from models.domain.status import TERMINAL_JOB_STATUSES, JobStatus

__all__ = [
    "DEFAULT_CATCHUP_WINDOW",
    "DEFAULT_MAX_BACKFILL",
    "DEFAULT_MAX_TICK_ACTIONS",
    "MIN_CATCHUP_WINDOW",
    "OverlapAction",
    "OverlapPolicy",
    "ScheduleState",
    "TickAction",
    "TickActionKind",
    "TickPlan",
    "backfill_ticks",
    "fire_times",
    "is_interval_schedule",
    "jitter_offset",
    "next_fire",
    "overlap_action",
    "parse_schedule",
    "plan_tick",
    "should_pause",
    "validate_timezone",
]

DEFAULT_CATCHUP_WINDOW = timedelta(days=365)  # Temporal's default
MIN_CATCHUP_WINDOW = timedelta(seconds=10)  # Temporal's minimum
DEFAULT_MAX_BACKFILL = 1000
DEFAULT_MAX_TICK_ACTIONS = 1000

# ---------------------------------------------------------------------------
# Cron parsing
# ---------------------------------------------------------------------------

_ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Spelled out, not calendar.month_abbr: that one follows the process locale.
_MONTHS = {
    name: i
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


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
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _WEEKDAYS),
)

_ITEM = re.compile(
    r"^(?:(?P<star>\*)|(?P<a>[a-z0-9]+)(?:-(?P<b>[a-z0-9]+))?)(?:/(?P<step>[0-9]+))?$"
)
_SYNTAX = (
    "use *, n, a-b, */n, a-b/n and lists joined by ','; "
    "extensions such as L, W, #, ?, H and R are not supported"
)


@dataclass(frozen=True)
class _Compiled:
    canonical: str  # what parse_schedule returns
    fields: str  # five fields, aliases expanded: what croniter iterates
    interval: bool  # hour field is * or */n: DST by elapsed time (see the module doc)


def _value(token: str, spec: _Field, item: str) -> int:
    if token.isdigit():
        n = int(token)
    elif token in spec.names:
        n = spec.names[token]
    else:
        what = "a number or a three-letter name" if spec.names else "a number"
        raise ValueError(f"{spec.name} field {item!r}: {token!r} is not {what} ({_SYNTAX})")
    if not spec.lo <= n <= spec.hi:
        raise ValueError(f"{spec.name} field {item!r}: {n} is out of range {spec.lo}-{spec.hi}")
    return n


def _expand_field(text: str, spec: _Field) -> set[int]:
    """The values a field matches (raises ValueError with the reason)."""
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"{spec.name} field {text!r}: empty list item")
        m = _ITEM.match(item)
        if m is None:
            raise ValueError(f"{spec.name} field {item!r}: not a valid cron item ({_SYNTAX})")
        step = int(m["step"]) if m["step"] is not None else 1
        if m["star"]:
            lo, hi = spec.lo, spec.hi
        else:
            lo = _value(m["a"], spec, item)
            if m["b"] is None:
                if m["step"] is not None:
                    raise ValueError(
                        f"{spec.name} field {item!r}: a step needs a range; write "
                        f"{m['a']}-{spec.hi}/{step} or */{step}"
                    )
                hi = lo
            else:
                hi = _value(m["b"], spec, item)
                if hi < lo:
                    hint = " (Sunday is also 7)" if spec.hi == 7 and hi == 0 else ""
                    raise ValueError(
                        f"{spec.name} field {item!r}: range {m['a']}-{m['b']} is reversed{hint}"
                    )
        if step < 1:
            raise ValueError(f"{spec.name} field {item!r}: step must be at least 1")
        if m["step"] is not None and step > spec.hi - spec.lo:
            raise ValueError(
                f"{spec.name} field {item!r}: step {step} is larger than the field's "
                f"span {spec.lo}-{spec.hi}"
            )
        values.update(range(lo, hi + 1, step))
    return values


@lru_cache(maxsize=1024)
def _compile(expr: str) -> _Compiled:
    if not isinstance(expr, str):
        raise ValueError("a cron expression must be a string")
    text = " ".join(expr.split()).lower()
    if not text:
        raise ValueError("empty cron expression")
    if text.startswith("@"):
        if text == "@reboot":
            raise ValueError("@reboot is not supported: a campaign has no boot; use a time")
        if text not in _ALIASES:
            raise ValueError(
                f"unknown cron alias {text!r}; use one of {', '.join(sorted(_ALIASES))}"
            )
        fields = _ALIASES[text]
        return _Compiled(canonical=text, fields=fields, interval=fields.split()[1] == "*")
    parts = text.split(" ")
    if len(parts) != 5:
        extra = ""
        if len(parts) in (6, 7):
            extra = " (seconds and year fields are not supported)"
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(parts)}{extra}"
        )
    sets = [_expand_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    dom_text, dow_text = parts[2], parts[4]
    if (
        dom_text != "*"
        and dow_text != "*"
        and (dom_text.startswith("*") or dow_text.startswith("*"))
    ):
        raise ValueError(
            f"ambiguous day fields {dom_text!r} and {dow_text!r}: cron implementations "
            "disagree whether a '*/n' day field combines with the other by AND or OR; "
            "write the days explicitly"
        )
    if dow_text == "*" and dom_text != "*":
        # Only the day of the month restricts days: it has to occur in some month.
        days, months = sets[2], sets[3]
        if not any(d <= calendar.monthrange(2024, m)[1] for m in months for d in days):
            raise ValueError(
                f"the schedule never fires: day(s) {_fmt(days)} do not occur in "
                f"month(s) {_fmt(months)}"
            )
    try:  # croniter must agree; our grammar is a subset of its own
        croniter(text)
    except Exception as exc:  # croniter's errors share no useful base class
        raise ValueError(f"invalid cron expression {text!r}: {exc}") from exc
    return _Compiled(canonical=text, fields=text, interval=parts[1].startswith("*"))


def _fmt(values: set[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


def parse_schedule(expr: str) -> str:
    """Validate a 5-field cron expression or an alias; return it normalised.

    Normalised: lower case, single spaces; aliases are kept as written
    (``@annually`` stays ``@annually``). Raises ValueError with the reason.
    """
    return _compile(expr).canonical


def is_interval_schedule(expr: str) -> bool:
    """True when the hour field is ``*`` or ``*/n``: DST is handled by elapsed time."""
    return _compile(expr).interval


def validate_timezone(name: str) -> ZoneInfo:
    """An IANA time zone by name (``Europe/Berlin``); ValueError naming the zone otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin"
        ) from exc


def _zone(tz: ZoneInfo | str) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else validate_timezone(tz)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


# ---------------------------------------------------------------------------
# Fire times
# ---------------------------------------------------------------------------


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


def _walls(fields: str, start: datetime) -> Iterator[datetime]:
    """Matching naive wall-clock times at or after ``start`` (naive), in order."""
    floor = start.replace(second=0, microsecond=0)
    it = croniter(fields, floor - timedelta(seconds=1))
    while True:
        yield cast(datetime, it.get_next(datetime))


def _fires(compiled: _Compiled, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
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
    for wall in _walls(compiled.fields, start):
        r = _resolve(wall, tz)
        if compiled.interval:
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
    compiled = _compile(expr)
    zone = _zone(tz)
    start = _aware(after, "after")
    end = _aware(until, "until")
    for instant in _fires(compiled, zone, start):
        if instant > end:
            return
        yield instant


def next_fire(expr: str, tz: ZoneInfo | str, after: datetime) -> datetime:
    """The first fire instant (aware, UTC) strictly after ``after``."""
    return next(_fires(_compile(expr), _zone(tz), _aware(after, "after")))


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
    compiled = _compile(expr)
    zone = _zone(tz)
    lo, hi = _aware(start, "start"), _aware(end, "end")
    if lo > hi:
        raise ValueError(f"backfill start {lo.isoformat()} is after its end {hi.isoformat()}")
    if max_ticks < 1:
        raise ValueError("max_ticks must be at least 1")
    ticks: list[datetime] = []
    for instant in _fires(compiled, zone, lo - timedelta(microseconds=1)):
        if instant >= hi:
            break
        if len(ticks) == max_ticks:
            raise ValueError(
                f"the backfill range holds more than {max_ticks} fire times; "
                "split it into smaller ranges"
            )
        ticks.append(instant)
    return ticks


# ---------------------------------------------------------------------------
# Overlap, jitter, pause
# ---------------------------------------------------------------------------


class OverlapPolicy(StrEnum):
    """What a tick does while an earlier run of the campaign is still rendering."""

    SKIP = "skip"  # default: drop the tick (recorded skip_overlap)
    BUFFER_ONE = "buffer_one"  # keep one tick waiting; further ones are skipped
    BUFFER_ALL = "buffer_all"  # keep every tick waiting; they run one after another
    CANCEL_OTHER = "cancel_other"  # cancel the running run(s), then start
    ALLOW_ALL = "allow_all"  # start regardless


OverlapAction = Literal["start", "buffer", "cancel_other_then_start", "skip_overlap"]
TickActionKind = Literal[
    "start", "buffer", "cancel_other_then_start", "skip_overlap", "skip_coalesced", "skip_missed"
]


def overlap_action(
    policy: OverlapPolicy | str, *, running_runs: int, buffered: int
) -> OverlapAction:
    """What one tick does under ``policy`` (also usable for each backfilled tick).

    ``buffered`` runs count as busy: a tick never jumps ahead of buffered ones.
    """
    policy = OverlapPolicy(policy)
    if running_runs < 0 or buffered < 0:
        raise ValueError("running_runs and buffered must not be negative")
    busy = running_runs > 0 or buffered > 0
    if policy is OverlapPolicy.ALLOW_ALL or not busy:
        return "start"
    if policy is OverlapPolicy.SKIP:
        return "skip_overlap"
    if policy is OverlapPolicy.BUFFER_ONE:
        return "buffer" if buffered == 0 else "skip_overlap"
    if policy is OverlapPolicy.BUFFER_ALL:
        return "buffer"
    # CANCEL_OTHER: cancel what is running, and what is buffered (cannot be, under
    # this policy, but a policy change could leave some) is superseded too.
    return "cancel_other_then_start"


def jitter_offset(campaign_id: str, scheduled_for: datetime, jitter: timedelta) -> timedelta:
    """A deterministic delay in ``[0, jitter)`` for one tick of one campaign.

    A hash of (campaign id, tick in UTC): every scheduler process, and every
    retry, computes the same delay. Microsecond resolution; 0 when jitter is 0.
    """
    if jitter < timedelta(0):
        raise ValueError("jitter must not be negative")
    span = jitter // timedelta(microseconds=1)
    if span == 0:
        return timedelta(0)
    tick = _aware(scheduled_for, "scheduled_for")
    digest = hashlib.sha256(f"{campaign_id}\x00{tick.isoformat()}".encode()).digest()
    return timedelta(microseconds=int.from_bytes(digest[:8], "big") % span)


def should_pause(pause_on_failure: bool, last_run_status: JobStatus | str) -> bool:
    """Whether a finished run pauses its schedule (applied by the caller).

    Only ``failed`` pauses; ``partial``, ``succeeded`` and ``cancelled`` do not (see
    the module doc). ValueError for an unknown status or a run not finished yet.
    """
    try:
        status = JobStatus(last_run_status)
    except ValueError:
        raise ValueError(f"unknown run status {last_run_status!r}") from None
    if status not in TERMINAL_JOB_STATUSES:
        raise ValueError(f"run status {status.value!r} is not final")
    return pause_on_failure and status is JobStatus.FAILED


# ---------------------------------------------------------------------------
# Tick planning
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleState:
    """What the scheduler knows about one campaign's schedule at a tick.

    ``last_scheduled_for``: the latest tick already recorded (any action, skips
    included). ``resumed_at``: when a paused schedule was last resumed; ticks
    before it are not caught up. ``running_runs``: runs still rendering;
    ``buffered``: runs waiting because of buffer_one/buffer_all.
    """

    expr: str
    tz: str
    created_at: datetime
    enabled: bool = True
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window: timedelta = DEFAULT_CATCHUP_WINDOW
    coalesce: bool = True
    jitter: timedelta = timedelta(0)
    end_at: datetime | None = None
    last_scheduled_for: datetime | None = None
    resumed_at: datetime | None = None
    running_runs: int = 0
    buffered: int = 0
    paused_by_failure: bool = False

    def __post_init__(self) -> None:
        _compile(self.expr)
        validate_timezone(self.tz)
        object.__setattr__(self, "overlap", OverlapPolicy(self.overlap))
        for name in ("created_at", "end_at", "last_scheduled_for", "resumed_at"):
            value = getattr(self, name)
            if value is not None:
                _aware(value, name)
        if self.catchup_window < MIN_CATCHUP_WINDOW:
            raise ValueError(f"catchup_window must be at least {MIN_CATCHUP_WINDOW}")
        if self.jitter < timedelta(0):
            raise ValueError("jitter must not be negative")
        if self.running_runs < 0 or self.buffered < 0:
            raise ValueError("running_runs and buffered must not be negative")

    @property
    def paused(self) -> bool:
        return not self.enabled or self.paused_by_failure

    @property
    def watermark(self) -> datetime:
        """Ticks at or before this instant are never planned again."""
        marks = [self.created_at, self.last_scheduled_for, self.resumed_at]
        return max(_aware(m, "mark") for m in marks if m is not None)


@dataclass(frozen=True)
class TickAction:
    scheduled_for: datetime  # the nominal fire time (aware UTC): the run's identity
    action: TickActionKind
    fire_at: datetime  # scheduled_for + deterministic jitter


@dataclass(frozen=True)
class TickPlan:
    actions: tuple[TickAction, ...]
    # The new value of ScheduleState.last_scheduled_for (unchanged when no action).
    last_scheduled_for: datetime | None
    # When to call plan_tick again: the next tick's fire_at, ``now`` when ``more``,
    # None when paused or exhausted.
    next_wakeup: datetime | None
    exhausted: bool = False  # end_at has passed: no tick will ever be planned again
    more: bool = False  # max_actions reached: record these and call again at once


def _ticks(
    compiled: _Compiled, tz: ZoneInfo, after: datetime, campaign_id: str, jitter: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """(tick, fire_at) pairs; jitter capped by the gap to the next tick (as Temporal)."""
    it = _fires(compiled, tz, after)
    tick = next(it)
    for following in it:
        yield tick, tick + jitter_offset(campaign_id, tick, min(jitter, following - tick))
        tick = following


def plan_tick(
    state: ScheduleState,
    now: datetime,
    *,
    campaign_id: str,
    max_actions: int = DEFAULT_MAX_TICK_ACTIONS,
) -> TickPlan:
    """Decide what the scheduler does for ``state`` at ``now`` (see the module doc).

    The caller records every action (skips included), starts/buffers/cancels as
    told, and stores ``plan.last_scheduled_for`` as the new watermark.
    """
    now = _aware(now, "now")
    if max_actions < 1:
        raise ValueError("max_actions must be at least 1")
    end_at = _aware(state.end_at, "end_at") if state.end_at is not None else None
    if state.paused:
        return TickPlan(
            actions=(),
            last_scheduled_for=state.last_scheduled_for,
            next_wakeup=None,
            exhausted=end_at is not None and end_at <= now,
        )
    compiled = _compile(state.expr)
    zone = validate_timezone(state.tz)
    horizon = now - state.catchup_window
    running, buffered = state.running_runs, state.buffered
    actions: list[TickAction] = []
    next_wakeup: datetime | None = None
    exhausted = more = False

    ticks = _ticks(compiled, zone, state.watermark, campaign_id, state.jitter)
    upcoming = next(ticks)
    while True:
        tick, fire_at = upcoming
        if end_at is not None and tick > end_at:
            exhausted = True
            break
        if fire_at > now:
            next_wakeup = fire_at
            break
        if len(actions) == max_actions:
            more = True
            next_wakeup = now
            break
        upcoming = next(ticks)
        kind: TickActionKind
        if fire_at < horizon:
            kind = "skip_missed"
        elif state.coalesce and upcoming[1] <= now and (end_at is None or upcoming[0] <= end_at):
            kind = "skip_coalesced"
        else:
            kind = overlap_action(state.overlap, running_runs=running, buffered=buffered)
            if kind == "start":
                running += 1
            elif kind == "buffer":
                buffered += 1
            elif kind == "cancel_other_then_start":
                running, buffered = 1, 0
        actions.append(TickAction(scheduled_for=tick, action=kind, fire_at=fire_at))

    return TickPlan(
        actions=tuple(actions),
        last_scheduled_for=actions[-1].scheduled_for if actions else state.last_scheduled_for,
        next_wakeup=next_wakeup,
        exhausted=exhausted,
        more=more,
    )
