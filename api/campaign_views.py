"""What the campaign and webhook endpoints return, and the one place that shapes it from rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from models.db.campaign_tables import Campaign, CampaignRun
from models.db.campaigns import run_status
from models.db.tables import Job
from models.db.webhook_tables import WebhookAttempt, WebhookDelivery


class CampaignOut(BaseModel):
    id: uuid.UUID
    name: str
    schedule: str
    timezone: str
    spec: dict[str, Any]
    enabled: bool
    state: str  # active | paused | paused_by_failure | ended
    paused_by_failure: bool
    seed_policy: str
    max_images_per_run: int | None
    end_at: datetime | None
    overlap: str
    catchup_window_s: int
    coalesce: bool
    pause_on_failure: bool
    jitter_s: int
    webhook_url: str | None
    refine: dict[str, Any] | None = None  # each run's automatic refinement (null: none)
    next_fire_at: datetime | None
    last_scheduled_for: datetime | None
    created_at: datetime
    updated_at: datetime
    links: dict[str, str]


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None


class RunOutcome(BaseModel):
    total: int
    done: int
    failed: int
    cancelled: int
    progress: float
    error: str | None


class RunOut(BaseModel):
    id: uuid.UUID
    campaign_id: uuid.UUID
    scheduled_for: datetime
    origin: str  # schedule | manual | backfill
    status: str  # the job's status once started; else buffered, skip_*, superseded, refused
    job_id: uuid.UUID | None
    reason: str | None  # why a run has no job
    outcome: RunOutcome | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: dict[str, str]
    refine_job_id: uuid.UUID | None = None  # the campaign's refinement of this run's job


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


class BackfillRunOut(BaseModel):
    scheduled_for: datetime
    seeds: list[int] | None  # None: an existing run whose job is gone
    existing: bool  # the tick had rendered (or was rendering) before this backfill
    run: RunOut | None  # None in a dry run


class BackfillOut(BaseModel):
    dry_run: bool
    items: list[BackfillRunOut]


def campaign_state(campaign: Campaign) -> str:
    if not campaign.enabled:
        return "paused"
    if campaign.paused_by_failure:
        return "paused_by_failure"
    return "active" if campaign.next_fire_at is not None else "ended"


def campaign_out(campaign: Campaign) -> CampaignOut:
    base = f"/v1/campaigns/{campaign.id}"
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        schedule=campaign.schedule,
        timezone=campaign.timezone,
        spec=campaign.spec,
        enabled=campaign.enabled,
        state=campaign_state(campaign),
        paused_by_failure=campaign.paused_by_failure,
        seed_policy=campaign.seed_policy,
        max_images_per_run=campaign.max_images_per_run,
        end_at=campaign.end_at,
        overlap=campaign.overlap,
        catchup_window_s=campaign.catchup_window_s,
        coalesce=campaign.coalesce,
        pause_on_failure=campaign.pause_on_failure,
        jitter_s=campaign.jitter_s,
        webhook_url=campaign.webhook_url,
        refine=campaign.refine,
        next_fire_at=campaign.next_fire_at,
        last_scheduled_for=campaign.last_scheduled_for,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        links={
            "self": base,
            "runs": f"{base}/runs",
            "trigger": f"{base}/trigger",
            "backfill": f"{base}/backfill",
        },
    )


def run_out(run: CampaignRun, job: Job | None) -> RunOut:
    outcome = None
    links = {"campaign": f"/v1/campaigns/{run.campaign_id}"}
    if job is not None:
        finished = job.done + job.failed + job.cancelled
        outcome = RunOutcome(
            total=job.total,
            done=job.done,
            failed=job.failed,
            cancelled=job.cancelled,
            progress=round(finished / job.total, 4) if job.total else 1.0,
            error=job.error,
        )
        links.update(job=f"/v1/jobs/{job.id}", images=f"/v1/jobs/{job.id}/images")
    if run.refine_job_id is not None:
        links["refine_job"] = f"/v1/jobs/{run.refine_job_id}"
    return RunOut(
        id=run.id,
        campaign_id=run.campaign_id,
        scheduled_for=run.scheduled_for,
        origin=run.origin,
        status=run_status(run, job),
        job_id=run.job_id,
        reason=run.reason,
        outcome=outcome,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        links=links,
        refine_job_id=run.refine_job_id,
    )


class WebhookSecretOut(BaseModel):
    secret: str
    created_at: datetime
    header: str  # how deliveries are signed
    headers: list[str]  # every signature header a delivery carries
    # After a rotation: the previous secret still signs every delivery until then.
    previous_valid_until: datetime | None = None


class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    outcome: str  # succeeded | retry | failed


class DeliveryOut(BaseModel):
    id: int
    event: str
    event_id: uuid.UUID
    job_id: uuid.UUID | None
    url: str
    status: str  # pending | succeeded | failed
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


def delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        event=delivery.event,
        event_id=delivery.event_id,
        job_id=delivery.job_id,
        url=delivery.url,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        attempt_log=[
            AttemptOut(
                number=a.number,
                started_at=a.started_at,
                duration_ms=a.duration_ms,
                status_code=a.status_code,
                error=a.error,
                outcome=a.outcome,
            )
            for a in attempts
        ],
    )
