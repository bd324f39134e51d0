"""What a tick does beside its fire time: the overlap policy, jitter, pause on failure.

Semantics follow Temporal's Schedules; docs/CAMPAIGNS.md, "Scheduling rules", says
what each policy does for a client.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from models.domain.schedule.instants import to_utc
from models.domain.status import TERMINAL_JOB_STATUSES, JobStatus

__all__ = ["OverlapAction", "OverlapPolicy", "jitter_offset", "overlap_action", "should_pause"]


class OverlapPolicy(StrEnum):
    """What a tick does while an earlier run of the campaign is still rendering."""

    SKIP = "skip"  # default: drop the tick (recorded skip_overlap)
    BUFFER_ONE = "buffer_one"  # keep one tick waiting; further ones are skipped
    BUFFER_ALL = "buffer_all"  # keep every tick waiting; they run one after another
    CANCEL_OTHER = "cancel_other"  # cancel the running run(s), then start
    ALLOW_ALL = "allow_all"  # start regardless


OverlapAction = Literal["start", "buffer", "cancel_other_then_start", "skip_overlap"]


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
    tick = to_utc(scheduled_for, "scheduled_for")
    digest = hashlib.sha256(f"{campaign_id}\x00{tick.isoformat()}".encode()).digest()
    return timedelta(microseconds=int.from_bytes(digest[:8], "big") % span)


def should_pause(pause_on_failure: bool, last_run_status: JobStatus | str) -> bool:
    """Whether a finished run pauses its schedule (applied by the caller).

    Only ``failed`` pauses: ``partial`` rendered something and its failed cells can
    be retried, and ``cancelled`` was someone's choice. ValueError for an unknown
    status or a run not finished yet.
    """
    try:
        status = JobStatus(last_run_status)
    except ValueError:
        raise ValueError(f"unknown run status {last_run_status!r}") from None
    if status not in TERMINAL_JOB_STATUSES:
        raise ValueError(f"run status {status.value!r} is not final")
    return pause_on_failure and status is JobStatus.FAILED
