"""The scheduler's decision at a tick: which due ticks start, buffer or are recorded skipped.

Temporal-style (catch-up window, coalescing, overlap policy, jitter, pause); the
rules are in docs/CAMPAIGNS.md, "Scheduling rules". The caller records every action
(skips included) and stores ``TickPlan.last_scheduled_for`` as the new watermark.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from models.domain.schedule.cron import Schedule, compile_schedule
from models.domain.schedule.fire_times import fires
from models.domain.schedule.instants import input_utc, to_utc, validate_timezone
from models.domain.schedule.policies import OverlapPolicy, jitter_offset, overlap_action

__all__ = [
    "DEFAULT_CATCHUP_WINDOW",
    "DEFAULT_MAX_TICK_ACTIONS",
    "MIN_CATCHUP_WINDOW",
    "ScheduleState",
    "TickAction",
    "TickActionKind",
    "TickPlan",
    "plan_tick",
]

DEFAULT_CATCHUP_WINDOW = timedelta(days=365)  # Temporal's default
MIN_CATCHUP_WINDOW = timedelta(seconds=10)  # Temporal's minimum
DEFAULT_MAX_TICK_ACTIONS = 1000

TickActionKind = Literal[
    "start", "buffer", "cancel_other_then_start", "skip_overlap", "skip_coalesced", "skip_missed"
]


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
        compile_schedule(self.expr)
        validate_timezone(self.tz)
        object.__setattr__(self, "overlap", OverlapPolicy(self.overlap))
        for name in ("created_at", "end_at", "last_scheduled_for", "resumed_at"):
            value = getattr(self, name)
            if value is not None:
                input_utc(value, name)
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
        return max(to_utc(m, "mark") for m in marks if m is not None)


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
    schedule: Schedule, tz: ZoneInfo, after: datetime, campaign_id: str, jitter: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """(tick, fire_at) pairs; jitter capped by the gap to the next tick (as Temporal)."""
    it = fires(schedule, tz, after)
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
    """Decide what the scheduler does for ``state`` at ``now``.

    Due ticks are those after the watermark whose ``fire_at`` has come. Older than
    the catch-up window: ``skip_missed``; with ``coalesce`` only the latest due tick
    acts and the older ones are ``skip_coalesced``; the acting tick goes through the
    overlap policy. Ticks after ``end_at`` are never planned (``exhausted``); a
    paused schedule plans nothing. At most ``max_actions`` come back (``more``).
    """
    now = input_utc(now, "now")
    if max_actions < 1:
        raise ValueError("max_actions must be at least 1")
    end_at = input_utc(state.end_at, "end_at") if state.end_at is not None else None
    if state.paused:
        return TickPlan(
            actions=(),
            last_scheduled_for=state.last_scheduled_for,
            next_wakeup=None,
            exhausted=end_at is not None and end_at <= now,
        )
    schedule = compile_schedule(state.expr)
    zone = validate_timezone(state.tz)
    horizon = now - state.catchup_window
    running, buffered = state.running_runs, state.buffered
    actions: list[TickAction] = []
    next_wakeup: datetime | None = None
    exhausted = more = False

    ticks = _ticks(schedule, zone, state.watermark, campaign_id, state.jitter)
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
