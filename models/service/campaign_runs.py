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

from sqlalchemy.orm import Session

from models.db.campaign_tables import Campaign, CampaignRun
from models.db.campaigns import (
    RunOrigin,
    RunStatus,
    active_counts,
    compute_next_fire,
    schedule_state,
)
from models.db.job_states import cancel_job
from models.db.runs import (
    buffered_runs,
    finished_runs,
    recorded_ticks,
    rendering_runs,
)
from models.db.tables import Job
from models.domain.policy import ContentPolicy
from models.domain.refine import RefineIn
from models.domain.schedule.plan import TickActionKind, plan_tick
from models.domain.schedule.policies import OverlapPolicy, overlap_action, should_pause
from models.domain.seed_policy import run_seeds
from models.domain.spec import JobSpec, SpecError
from models.domain.status import JobStatus
from models.service.refine import create_child
from models.service.submit import JobRequest, QuotaExceeded, Submitter

MAX_LABELS = 50
_SKIP_REASONS: dict[str, str] = {
    "skip_overlap": "an earlier run was still rendering (overlap policy)",
    "skip_missed": "found after the catch-up window had passed",
    "skip_coalesced": "a later missed tick rendered instead (coalesce)",
}


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


def _refusal(
    campaign: Campaign, spec: JobSpec, submitter: Submitter, policy: ContentPolicy
) -> str | None:
    """Why this run may not render (limits and the tenant's policy can change after the
    campaign was accepted)."""
    cells = spec.cell_count(submitter.settings.prompt_library)
    if campaign.max_images_per_run is not None and cells > campaign.max_images_per_run:
        return f"the grid has {cells} images; max_images_per_run is {campaign.max_images_per_run}"
    try:
        submitter.check(spec, policy=policy)
    except SpecError as exc:
        return str(exc)
    return None


def start_run(
    session: Session, *, campaign: Campaign, run: CampaignRun, submitter: Submitter, now: datetime
) -> tuple[Job | None, Publication | None]:
    """Create the run's job through the submit path, or refuse the run with its reason.

    A quota refusal is recorded for a scheduled tick; a manual or backfill run raises
    ``QuotaExceeded`` to its caller instead (models/service/submit.py).
    """
    spec = run_spec(campaign, run.scheduled_for)
    policy = submitter.policy(session, campaign.tenant_id)
    reason = _refusal(campaign, spec, submitter, policy)
    key = f"campaign:{campaign.id}:{run.scheduled_for.isoformat()}"
    if reason is None:
        try:
            [created] = submitter.create(
                session,
                tenant_id=campaign.tenant_id,
                requests=[JobRequest(spec, key)],
                policy=policy,
            )
        except QuotaExceeded as exc:
            if run.origin != RunOrigin.SCHEDULE:
                raise
            reason = f"quota: {exc.message}"
    if reason is not None:
        run.status, run.reason, run.finished_at = RunStatus.REFUSED.value, reason, now
        return None, None
    run.job_id, run.status, run.started_at = created.job.id, RunStatus.STARTED.value, now
    run.reason = run.finished_at = None
    return created.job, Publication(created.job.model, created.shard_ids)


def _cancel_others(session: Session, *, campaign: Campaign) -> None:
    """cancel_other: cancel the runs still rendering, drop the buffered ones."""
    for _run, job in rendering_runs(session, campaign_id=campaign.id):
        cancel_job(session, job=job)  # the run settles as cancelled on the next pass
    for run in buffered_runs(session, campaign_id=campaign.id):
        run.status, run.reason = RunStatus.SUPERSEDED.value, "cancel_other started a newer run"


def record_tick(
    session: Session,
    *,
    campaign: Campaign,
    scheduled_for: datetime,
    origin: RunOrigin,
    action: TickActionKind,
    submitter: Submitter,
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
        job, publication = start_run(
            session, campaign=campaign, run=run, submitter=submitter, now=now
        )
    elif action == "buffer":
        run.status = RunStatus.BUFFERED.value
    else:
        run.status, run.reason, run.finished_at = action, _SKIP_REASONS[action], now
    session.add(run)
    session.flush()  # the unique (campaign, scheduled_for) guard fires here, not at commit
    return RunResult(run, job, publication)


def fire_due(
    session: Session, *, campaign: Campaign, submitter: Submitter, now: datetime
) -> list[RunResult]:
    """Record every due tick of a locked campaign and advance its watermark."""
    running, buffered = active_counts(session, campaign_id=campaign.id)
    state = schedule_state(campaign, running_runs=running, buffered=buffered)
    plan = plan_tick(state, now, campaign_id=str(campaign.id))
    ticks = [a.scheduled_for for a in plan.actions]
    taken = recorded_ticks(session, campaign_id=campaign.id, ticks=ticks)
    results = [
        record_tick(
            session,
            campaign=campaign,
            scheduled_for=a.scheduled_for,
            origin=RunOrigin.SCHEDULE,
            action=a.action,
            submitter=submitter,
            now=now,
        )
        for a in plan.actions
        if a.scheduled_for not in taken  # a backfill got there first
    ]
    campaign.last_scheduled_for = plan.last_scheduled_for
    campaign.next_fire_at = now if plan.more else plan.next_wakeup
    return results


def settle(
    session: Session, *, campaign: Campaign, submitter: Submitter, now: datetime
) -> list[RunResult]:
    """Close runs whose job finished (pausing on failure), then start a buffered run if idle."""
    finished = finished_runs(session, campaign_id=campaign.id)
    started: list[RunResult] = []
    for run, status in finished:
        run.status, run.finished_at = status, now
        if should_pause(campaign.pause_on_failure, JobStatus(status)):
            campaign.paused_by_failure = True
            campaign.next_fire_at = compute_next_fire(campaign, now)
        refined = _refine_run(session, campaign=campaign, run=run, submitter=submitter)
        if refined is not None:
            started.append(refined)
    while campaign.enabled and not campaign.paused_by_failure:
        running, buffered = active_counts(session, campaign_id=campaign.id)
        if running or not buffered:
            break
        run = buffered_runs(session, campaign_id=campaign.id)[0]
        job, publication = start_run(
            session, campaign=campaign, run=run, submitter=submitter, now=now
        )
        session.flush()
        started.append(RunResult(run, job, publication))
    return started


def _refine_run(
    session: Session, *, campaign: Campaign, run: CampaignRun, submitter: Submitter
) -> RunResult | None:
    """The campaign's refinement of a finished run's job (``refine`` in its spec): a child
    job linked to the run. One that cannot be made (no cell scored for ``top``, a quota)
    is the run's ``reason``; the run keeps its job's status."""
    if campaign.refine is None or run.job_id is None or run.refine_job_id is not None:
        return None
    parent = session.get(Job, run.job_id)
    if parent is None or parent.status not in (JobStatus.SUCCEEDED, JobStatus.PARTIAL):
        return None
    request = RefineIn.model_validate(campaign.refine)
    key = f"campaign:{campaign.id}:{run.scheduled_for.isoformat()}:refine"
    try:
        with session.begin_nested():  # nothing of a refused refinement stays
            created = create_child(
                submitter,
                session,
                tenant_id=campaign.tenant_id,
                parent=parent,
                request=request,
                idempotency_key=key,
            )
    except (SpecError, QuotaExceeded) as exc:
        run.reason = f"refine: {exc}"
        return None
    run.refine_job_id = created.job.id
    return RunResult(run, created.job, Publication(created.job.model, created.shard_ids))


def trigger(
    session: Session,
    *,
    campaign: Campaign,
    overlap: OverlapPolicy | None,
    submitter: Submitter,
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
        submitter=submitter,
        now=now,
    )
