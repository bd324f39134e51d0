"""Persisting and reading campaigns and their runs.

A campaign row carries its schedule state: the watermark (``last_scheduled_for``),
``resumed_at``, ``paused_by_failure`` and ``next_fire_at``, the instant the
scheduler next has work for it (None: nothing will ever be due unless someone
changes it). Every function that changes a campaign recomputes ``next_fire_at``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.db.campaign_tables import Campaign, CampaignRun
from models.db.pagination import Page, keyset_page
from models.db.tables import Job
from models.domain.campaign_spec import CampaignIn
from models.domain.schedule.plan import ScheduleState, plan_tick
from models.domain.schedule.policies import OverlapPolicy
from models.domain.status import JobStatus

ACTIVE_JOB_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class RunStatus(StrEnum):
    """A run's own status. A started run shows its job's status until it is settled."""

    BUFFERED = "buffered"  # waiting for the running one (buffer_one, buffer_all)
    STARTED = "started"  # its job exists; not settled yet
    SKIP_OVERLAP = "skip_overlap"  # a run was still rendering (overlap: skip)
    SKIP_MISSED = "skip_missed"  # found later than the catch-up window allows
    SKIP_COALESCED = "skip_coalesced"  # an older missed tick; only the latest renders
    SUPERSEDED = "superseded"  # a buffered run dropped by cancel_other
    REFUSED = "refused"  # its grid broke max_images_per_run or the operator's limits
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunOrigin(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"  # POST /trigger
    BACKFILL = "backfill"


def schedule_state(
    campaign: Campaign, *, running_runs: int = 0, buffered: int = 0
) -> ScheduleState:
    return ScheduleState(
        expr=campaign.schedule,
        tz=campaign.timezone,
        created_at=campaign.created_at,
        enabled=campaign.enabled,
        overlap=OverlapPolicy(campaign.overlap),
        catchup_window=timedelta(seconds=campaign.catchup_window_s),
        coalesce=campaign.coalesce,
        jitter=timedelta(seconds=campaign.jitter_s),
        end_at=campaign.end_at,
        last_scheduled_for=campaign.last_scheduled_for,
        resumed_at=campaign.resumed_at,
        running_runs=running_runs,
        buffered=buffered,
        paused_by_failure=campaign.paused_by_failure,
    )


def compute_next_fire(campaign: Campaign, now: datetime) -> datetime | None:
    """When the scheduler next has work: a due tick's fire time (past) or the next one."""
    plan = plan_tick(schedule_state(campaign), now, campaign_id=str(campaign.id), max_actions=1)
    return plan.actions[0].fire_at if plan.actions else plan.next_wakeup


def _assign(campaign: Campaign, data: CampaignIn) -> None:
    campaign.name = data.name
    campaign.schedule = data.schedule
    campaign.timezone = data.timezone
    campaign.spec = data.spec.model_dump(mode="json")
    campaign.enabled = data.enabled
    campaign.seed_policy = data.seed_policy.value
    campaign.max_images_per_run = data.max_images_per_run
    campaign.end_at = data.end_at
    campaign.overlap = data.overlap.value
    campaign.catchup_window_s = data.catchup_window_s
    campaign.coalesce = data.coalesce
    campaign.pause_on_failure = data.pause_on_failure
    campaign.jitter_s = data.jitter_s
    campaign.webhook_url = data.webhook_url
    refine = data.refine
    campaign.refine = None if refine is None else refine.model_dump(mode="json", exclude_none=True)


def create_campaign(
    session: Session, *, tenant_id: uuid.UUID, data: CampaignIn, now: datetime
) -> Campaign:
    """Ticks after ``now`` fire; none before it."""
    campaign = Campaign(id=uuid.uuid4(), tenant_id=tenant_id, created_at=now, updated_at=now)
    campaign.paused_by_failure = False
    _assign(campaign, data)
    campaign.next_fire_at = compute_next_fire(campaign, now)
    session.add(campaign)
    session.flush()
    return campaign


def update_campaign(
    campaign: Campaign, *, data: CampaignIn, given: set[str], now: datetime
) -> None:
    """Apply a validated update. The caller holds the campaign's row lock.

    ``{"enabled": true}`` resumes (also after a pause on failure): ticks that fell
    while paused are not caught up. A new schedule or time zone starts from now.
    """
    was_paused = not campaign.enabled or campaign.paused_by_failure
    new_clock = (data.schedule, data.timezone) != (campaign.schedule, campaign.timezone)
    _assign(campaign, data)
    if "enabled" in given and data.enabled:
        campaign.paused_by_failure = False
        if was_paused:
            campaign.resumed_at = now
    if new_clock:
        campaign.resumed_at = now
    campaign.updated_at = now
    campaign.next_fire_at = compute_next_fire(campaign, now)


def get_campaign(
    session: Session, *, tenant_id: uuid.UUID, campaign_id: uuid.UUID
) -> Campaign | None:
    return session.scalar(
        select(Campaign).where(Campaign.id == campaign_id, Campaign.tenant_id == tenant_id)
    )


def delete_campaign(session: Session, campaign: Campaign) -> None:
    """The campaign and its run history (cascade); the jobs it made stay."""
    session.delete(campaign)


def lock_campaign(session: Session, campaign: Campaign) -> None:
    """Serialise with the scheduler (and other requests) on this campaign's row."""
    session.refresh(campaign, with_for_update=True)


def list_campaigns(
    session: Session, *, tenant_id: uuid.UUID, cursor: str | None, limit: int
) -> Page[Campaign]:
    """Newest first; the cursor is the (created_at, id) of the last campaign returned."""
    return keyset_page(
        session,
        select(Campaign).where(Campaign.tenant_id == tenant_id),
        order=[Campaign.created_at, Campaign.id],
        key=lambda c: (c.created_at, c.id),
        cursor=cursor,
        limit=limit,
        descending=True,
    )


RunWithJob = tuple[CampaignRun, Job | None]


def _run_key(row: RunWithJob) -> tuple[datetime, uuid.UUID]:
    return row[0].scheduled_for, row[0].id


def list_runs(
    session: Session, *, campaign_id: uuid.UUID, cursor: str | None, limit: int
) -> Page[RunWithJob]:
    """Latest tick first, each with its job (None for skips and buffered runs)."""
    query = (
        select(CampaignRun, Job)
        .outerjoin(Job, Job.id == CampaignRun.job_id)
        .where(CampaignRun.campaign_id == campaign_id)
    )
    return keyset_page(
        session,
        query,
        order=[CampaignRun.scheduled_for, CampaignRun.id],
        key=_run_key,
        cursor=cursor,
        limit=limit,
        descending=True,
        rows=True,
    )


def active_counts(session: Session, *, campaign_id: uuid.UUID) -> tuple[int, int]:
    """(runs still rendering, runs buffered): "still rendering" is the job's own status."""
    running = session.scalar(
        select(func.count())
        .select_from(CampaignRun)
        .join(Job, Job.id == CampaignRun.job_id)
        .where(
            CampaignRun.campaign_id == campaign_id,
            CampaignRun.status == RunStatus.STARTED,
            Job.status.in_(ACTIVE_JOB_STATUSES),
        )
    )
    buffered = session.scalar(
        select(func.count())
        .select_from(CampaignRun)
        .where(CampaignRun.campaign_id == campaign_id, CampaignRun.status == RunStatus.BUFFERED)
    )
    return int(running or 0), int(buffered or 0)


def run_status(run: CampaignRun, job: Job | None) -> str:
    """What a client sees: the job's live status for a started run, else the run's own."""
    if run.status == RunStatus.STARTED and job is not None:
        return job.status
    return run.status


def campaign_input(row: Campaign) -> dict[str, Any]:
    """A stored campaign as the input it came from (the base a PATCH applies to)."""
    end_at: datetime | None = row.end_at
    return {
        "name": row.name,
        "schedule": row.schedule,
        "timezone": row.timezone,
        "spec": row.spec,
        "enabled": row.enabled,
        "seed_policy": row.seed_policy,
        "max_images_per_run": row.max_images_per_run,
        "end_at": end_at.isoformat() if end_at is not None else None,
        "overlap": row.overlap,
        "catchup_window_s": row.catchup_window_s,
        "coalesce": row.coalesce,
        "pause_on_failure": row.pause_on_failure,
        "jitter_s": row.jitter_s,
        "webhook_url": row.webhook_url,
        "refine": row.refine,
    }
