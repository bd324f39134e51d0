"""Campaign runs: turning ticks into jobs, exactly once.

Every function here runs in a transaction that holds the campaign's row lock
(the scheduler takes it with ``FOR UPDATE SKIP LOCKED``; the API with ``FOR
UPDATE``), and a run row is unique per (campaign, scheduled_for). A tick's run
and its job are written in one transaction, so a tick becomes at most one run
and a run never exists without its job (or its recorded reason for having none).
Shard ids to publish come back to the caller, who publishes them after commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.campaigns import (
    ACTIVE_JOB_STATUSES,
    RunOrigin,
    RunStatus,
    active_counts,
    compute_next_fire,
    schedule_state,
)
from models.db.jobs import NewJob, cancel_job, create_jobs
from models.db.tables import Campaign, CampaignRun, Job
from models.domain.schedule.fire_times import backfill_ticks
from models.domain.schedule.plan import TickActionKind, plan_tick
from models.domain.schedule.policies import OverlapPolicy, overlap_action, should_pause
from models.domain.seed_policy import run_seeds
from models.domain.spec import FieldError, JobSpec, SpecError, check_limits
from models.domain.status import JobStatus
from models.infra.settings import Settings

MAX_LABELS = 50
_SKIP_REASONS: dict[str, str] = {
    "skip_overlap": "an earlier run was still rendering (overlap policy)",
    "skip_missed": "found after the catch-up window had passed",
    "skip_coalesced": "a later missed tick rendered instead (coalesce)",
}
# A backfill may render a tick that has a run of one of these kinds (it has no job).
_REPLACEABLE = frozenset(
    {RunStatus.SKIP_OVERLAP, RunStatus.SKIP_MISSED, RunStatus.SKIP_COALESCED}
    | {RunStatus.SUPERSEDED, RunStatus.REFUSED}
)


@dataclass(frozen=True)
class Publication:
    model: str
    shard_ids: list[int]


@dataclass(frozen=True)
class RunResult:
    run: CampaignRun
    job: Job | None
    publication: Publication | None  # shards to publish once committed
    existing: bool = False  # a backfill found this tick already rendered or rendering


def run_spec(campaign: Campaign, scheduled_for: datetime) -> JobSpec:
    """The job one tick renders: the campaign's spec with this run's seeds and webhook."""
    spec = JobSpec.model_validate(campaign.spec)
    seeds = run_seeds(campaign.seed_policy, spec.seed_list(), scheduled_for, campaign.timezone)
    labels = dict(spec.labels)
    if len(labels) < MAX_LABELS:
        labels.setdefault("campaign_id", str(campaign.id))
    local = scheduled_for.astimezone(ZoneInfo(campaign.timezone))
    return spec.model_copy(
        update={
            "seeds": seeds,
            "name": spec.name or f"{campaign.name} {local:%Y-%m-%d %H:%M %Z}",
            "labels": labels,
            "webhook_url": campaign.webhook_url or spec.webhook_url,
        }
    )


def _refusal(campaign: Campaign, spec: JobSpec, settings: Settings) -> str | None:
    """Why this run may not render (limits can change after the campaign was accepted)."""
    cells = spec.cell_count()
    if campaign.max_images_per_run is not None and cells > campaign.max_images_per_run:
        return f"the grid has {cells} images; max_images_per_run is {campaign.max_images_per_run}"
    try:
        check_limits(spec, settings.limits)
    except SpecError as exc:
        return str(exc)
    return None


def _start(
    session: Session, *, campaign: Campaign, run: CampaignRun, settings: Settings, now: datetime
) -> tuple[Job | None, Publication | None]:
    """Create the run's job (or refuse the run, with its reason)."""
    spec = run_spec(campaign, run.scheduled_for)
    reason = _refusal(campaign, spec, settings)
    if reason is not None:
        run.status, run.reason, run.finished_at = RunStatus.REFUSED.value, reason, now
        return None, None
    key = f"campaign:{campaign.id}:{run.scheduled_for.isoformat()}"
    [created] = create_jobs(
        session,
        tenant_id=campaign.tenant_id,
        requests=[NewJob(spec, idempotency_key=key)],
        default_model=settings.model,
        batch_size=settings.batch_size,
    )
    run.job_id, run.status, run.started_at = created.job.id, RunStatus.STARTED.value, now
    run.reason = run.finished_at = None
    return created.job, Publication(created.job.model, created.shard_ids)


def _cancel_others(session: Session, *, campaign: Campaign) -> None:
    """cancel_other: cancel the runs still rendering, drop the buffered ones."""
    rows = session.execute(
        select(CampaignRun, Job)
        .join(Job, Job.id == CampaignRun.job_id)
        .where(
            CampaignRun.campaign_id == campaign.id,
            CampaignRun.status == RunStatus.STARTED,
            Job.status.in_(ACTIVE_JOB_STATUSES),
        )
    ).all()
    for _run, job in rows:
        cancel_job(session, job=job)  # the run settles as cancelled on the next pass
    for run in session.scalars(
        select(CampaignRun).where(
            CampaignRun.campaign_id == campaign.id, CampaignRun.status == RunStatus.BUFFERED
        )
    ):
        run.status, run.reason = RunStatus.SUPERSEDED.value, "cancel_other started a newer run"


def record_tick(
    session: Session,
    *,
    campaign: Campaign,
    scheduled_for: datetime,
    origin: RunOrigin,
    action: TickActionKind,
    settings: Settings,
    now: datetime,
) -> RunResult:
    """Materialise one tick as the plan says: start, buffer, cancel others, or a skip."""
    run = CampaignRun(
        id=uuid.uuid4(),
        campaign_id=campaign.id,
        tenant_id=campaign.tenant_id,
        scheduled_for=scheduled_for,
        origin=origin.value,
        created_at=now,
    )
    job: Job | None = None
    publication: Publication | None = None
    if action in ("start", "cancel_other_then_start"):
        if action == "cancel_other_then_start":
            _cancel_others(session, campaign=campaign)
        job, publication = _start(session, campaign=campaign, run=run, settings=settings, now=now)
    elif action == "buffer":
        run.status = RunStatus.BUFFERED.value
    else:
        run.status, run.reason, run.finished_at = action, _SKIP_REASONS[action], now
    session.add(run)
    session.flush()  # the unique (campaign, scheduled_for) guard fires here, not at commit
    return RunResult(run, job, publication)


def fire_due(
    session: Session, *, campaign: Campaign, settings: Settings, now: datetime
) -> list[RunResult]:
    """Record every due tick of a locked campaign and advance its watermark."""
    running, buffered = active_counts(session, campaign_id=campaign.id)
    state = schedule_state(campaign, running_runs=running, buffered=buffered)
    plan = plan_tick(state, now, campaign_id=str(campaign.id))
    ticks = [a.scheduled_for for a in plan.actions]
    taken = set(
        session.scalars(
            select(CampaignRun.scheduled_for).where(
                CampaignRun.campaign_id == campaign.id, CampaignRun.scheduled_for.in_(ticks)
            )
        )
    )
    results = [
        record_tick(
            session,
            campaign=campaign,
            scheduled_for=a.scheduled_for,
            origin=RunOrigin.SCHEDULE,
            action=a.action,
            settings=settings,
            now=now,
        )
        for a in plan.actions
        if a.scheduled_for not in taken  # a backfill got there first
    ]
    campaign.last_scheduled_for = plan.last_scheduled_for
    campaign.next_fire_at = now if plan.more else plan.next_wakeup
    return results


def settle(
    session: Session, *, campaign: Campaign, settings: Settings, now: datetime
) -> list[RunResult]:
    """Close runs whose job finished (pausing on failure), then start a buffered run if idle."""
    finished = session.execute(
        select(CampaignRun, Job.status)
        .join(Job, Job.id == CampaignRun.job_id)
        .where(
            CampaignRun.campaign_id == campaign.id,
            CampaignRun.status == RunStatus.STARTED,
            Job.status.not_in(ACTIVE_JOB_STATUSES),
        )
        .order_by(CampaignRun.scheduled_for)
    ).all()
    for run, status in finished:
        run.status, run.finished_at = status, now
        if should_pause(campaign.pause_on_failure, JobStatus(status)):
            campaign.paused_by_failure = True
            campaign.next_fire_at = compute_next_fire(campaign, now)
    started: list[RunResult] = []
    while campaign.enabled and not campaign.paused_by_failure:
        running, buffered = active_counts(session, campaign_id=campaign.id)
        if running or not buffered:
            break
        run = session.scalars(
            select(CampaignRun)
            .where(CampaignRun.campaign_id == campaign.id, CampaignRun.status == RunStatus.BUFFERED)
            .order_by(CampaignRun.scheduled_for)
            .limit(1)
        ).one()
        job, publication = _start(session, campaign=campaign, run=run, settings=settings, now=now)
        session.flush()
        started.append(RunResult(run, job, publication))
    return started


def trigger(
    session: Session,
    *,
    campaign: Campaign,
    overlap: OverlapPolicy | None,
    settings: Settings,
    now: datetime,
) -> RunResult:
    """Run now (paused or not): one tick at ``now`` through the overlap policy."""
    running, buffered = active_counts(session, campaign_id=campaign.id)
    action = overlap_action(overlap or campaign.overlap, running_runs=running, buffered=buffered)
    return record_tick(
        session,
        campaign=campaign,
        scheduled_for=now,
        origin=RunOrigin.MANUAL,
        action=action,
        settings=settings,
        now=now,
    )


@dataclass(frozen=True)
class PlannedRun:
    scheduled_for: datetime
    seeds: list[int]


def plan_backfill(
    campaign: Campaign, *, start: datetime, end: datetime, settings: Settings, now: datetime
) -> list[PlannedRun]:
    """The ticks in ``[start, end)`` and the seeds each would render (SpecError if too big)."""
    if end > now:
        raise SpecError([FieldError("end", "a backfill renders past ticks; end is in the future")])
    try:
        ticks = backfill_ticks(
            campaign.schedule, campaign.timezone, start, end, max_ticks=settings.max_bulk_jobs
        )
    except ValueError as exc:
        raise SpecError([FieldError("end", str(exc))]) from None
    spec = JobSpec.model_validate(campaign.spec)
    cells = len(ticks) * spec.cell_count()
    if cells > settings.max_grid_cells * 10:
        raise SpecError([FieldError("end", f"the range renders {cells} images; too many at once")])
    spec_seeds = spec.seed_list()
    return [
        PlannedRun(t, run_seeds(campaign.seed_policy, spec_seeds, t, campaign.timezone))
        for t in ticks
    ]


def backfill(
    session: Session,
    *,
    campaign: Campaign,
    ticks: list[datetime],
    settings: Settings,
    now: datetime,
) -> list[RunResult]:
    """Render each tick that has no job yet (every tick starts: overlap allow_all).

    A tick that already rendered (or is rendering, or buffered) is returned as
    ``existing``; a recorded skip or refusal is replaced by a run with a job.
    """
    existing: dict[datetime, tuple[CampaignRun, Job | None]] = {
        run.scheduled_for: (run, job)
        for run, job in session.execute(
            select(CampaignRun, Job)
            .outerjoin(Job, Job.id == CampaignRun.job_id)
            .where(CampaignRun.campaign_id == campaign.id, CampaignRun.scheduled_for.in_(ticks))
        )
    }
    results: list[RunResult] = []
    for tick in ticks:
        found = existing.get(tick)
        if found is None:
            results.append(
                record_tick(
                    session,
                    campaign=campaign,
                    scheduled_for=tick,
                    origin=RunOrigin.BACKFILL,
                    action="start",
                    settings=settings,
                    now=now,
                )
            )
            continue
        run, job = found
        if run.status not in _REPLACEABLE:
            results.append(RunResult(run, job, None, existing=True))
            continue
        run.origin = RunOrigin.BACKFILL.value
        job, publication = _start(session, campaign=campaign, run=run, settings=settings, now=now)
        session.flush()
        results.append(RunResult(run, job, publication))
    return results
