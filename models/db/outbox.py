"""The webhook outbox: events queued in the transaction that caused them, claimed and sent.

An event is a row in ``webhook_deliveries``, inserted in the transaction that
made it happen (a job reaching a terminal status), so an event is never lost
and never sent for something that rolled back. ``farm beat`` claims due rows
(``claim_due``: a lease, so a crashed sender's row comes back), POSTs them and
records each attempt (``record_attempt``). Delivery is at least once: receivers
dedupe on the event id (``webhook-id`` and ``Farm-Event-Id``, also ``id`` in the body).
The sender signs each attempt with its tenant's secrets (models/db/webhook_secrets.py).
Events other than ``job.completed`` are queued by models/db/webhook_events.py.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session

from models.db.campaign_tables import CampaignRun
from models.db.tables import Job, utcnow
from models.db.webhook_tables import WebhookAttempt, WebhookDelivery
from models.domain.webhook_events import JOB_COMPLETED


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # given up: a permanent refusal, or retried past the max age


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"


# --- The outbox: enqueue ----------------------------------------------------------------------


def job_payload(session: Session, *, job_id: uuid.UUID) -> tuple[uuid.UUID, dict[str, Any]]:
    """(tenant, event data) of a job as it is now in this transaction."""
    job = session.execute(
        select(
            Job.tenant_id,
            Job.status,
            Job.total,
            Job.done,
            Job.failed,
            Job.cancelled,
            Job.name,
            Job.labels,
            Job.model,
            Job.error,
            Job.created_at,
            Job.started_at,
            Job.finished_at,
            Job.priority,
            Job.paused_at,
            Job.held,
            Job.render_ms_total,
        ).where(Job.id == job_id)
    ).one()
    run = session.execute(
        select(CampaignRun.id, CampaignRun.campaign_id, CampaignRun.scheduled_for).where(
            CampaignRun.job_id == job_id
        )
    ).first()
    data: dict[str, Any] = {
        "job": {
            "id": str(job_id),
            "status": job.status,
            "total": job.total,
            "done": job.done,
            "failed": job.failed,
            "cancelled": job.cancelled,
            "name": job.name,
            "labels": job.labels,
            "model": job.model,
            "error": job.error,
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            "priority": job.priority,
            "paused": job.paused_at is not None,
            "held": job.held,
            "gpu_seconds": round(job.render_ms_total / 1000, 3),
        },
        "campaign": None
        if run is None
        else {
            "id": str(run.campaign_id),
            "run_id": str(run.id),
            "scheduled_for": _iso(run.scheduled_for),
        },
    }
    return job.tenant_id, data


def enqueue_job_completed(session: Session, *, job_id: uuid.UUID) -> int | None:
    """Queue ``job.completed`` if the job has a webhook URL; call in the finishing transaction."""
    url = session.scalar(select(Job.spec["webhook_url"].as_string()).where(Job.id == job_id))
    if not url:
        return None  # one small query for the jobs without a webhook
    tenant_id, data = job_payload(session, job_id=job_id)
    now = utcnow()
    delivery = WebhookDelivery(
        event_id=uuid.uuid4(),
        tenant_id=tenant_id,
        job_id=job_id,
        event=JOB_COMPLETED,
        url=url,
        payload=data,
        status=DeliveryStatus.PENDING.value,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    return delivery.id


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def render_body(
    *, event_id: uuid.UUID, event: str, created_at: datetime, payload: dict[str, Any], base_url: str
) -> bytes:
    """The exact bytes POSTed (and signed): the same for every attempt of one delivery."""
    job_id = payload.get("job", {}).get("id")
    base = base_url.rstrip("/")
    links = {}
    if job_id:
        links = {
            "job": f"{base}/v1/jobs/{job_id}",
            "images": f"{base}/v1/jobs/{job_id}/images",
            "webhooks": f"{base}/v1/jobs/{job_id}/webhooks",
        }
    body = {
        "id": str(event_id),
        "type": event,
        "created_at": created_at.isoformat(),
        "data": {**payload, "links": links},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


# --- The outbox: claim and record -------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    event_id: uuid.UUID
    tenant_id: uuid.UUID
    event: str
    url: str
    payload: dict[str, Any]
    attempt: int  # the number of the attempt about to be made (1 = first)
    created_at: datetime


def claim_due(
    session: Session, *, now: datetime, limit: int, lease_s: float
) -> list[ClaimedDelivery]:
    """Take up to ``limit`` due deliveries: each is leased for ``lease_s`` to this caller.

    ``FOR UPDATE SKIP LOCKED`` (Postgres) lets several senders claim side by side;
    the lease (``next_attempt_at`` pushed ahead) makes a crashed sender's row due again.
    """
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(due))
    if not ids:
        return []
    rows = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(
            attempts=WebhookDelivery.attempts + 1,
            next_attempt_at=now + timedelta(seconds=lease_s),
        )
        .returning(
            WebhookDelivery.id,
            WebhookDelivery.event_id,
            WebhookDelivery.tenant_id,
            WebhookDelivery.event,
            WebhookDelivery.url,
            WebhookDelivery.payload,
            WebhookDelivery.attempts,
            WebhookDelivery.created_at,
        )
    ).all()
    return [
        ClaimedDelivery(
            id=row.id,
            event_id=row.event_id,
            tenant_id=row.tenant_id,
            event=row.event,
            url=row.url,
            payload=row.payload,
            attempt=row.attempts,
            created_at=row.created_at,
        )
        for row in sorted(rows, key=lambda r: ids.index(r.id))
    ]


@dataclass(frozen=True)
class AttemptRecord:
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    outcome: AttemptOutcome
    next_attempt_at: datetime | None  # when outcome is RETRY


def record_attempt(session: Session, *, delivery: ClaimedDelivery, record: AttemptRecord) -> None:
    """Log the attempt and move the delivery on (only if no later claim took it over)."""
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            number=delivery.attempt,
            started_at=record.started_at,
            duration_ms=record.duration_ms,
            status_code=record.status_code,
            error=record.error,
            outcome=record.outcome.value,
        )
    )
    values: dict[str, object] = {
        "last_status_code": record.status_code,
        "last_error": record.error,
    }
    if record.outcome is AttemptOutcome.SUCCEEDED:
        values.update(status=DeliveryStatus.SUCCEEDED.value, delivered_at=utcnow())
        mine = WebhookDelivery.status == DeliveryStatus.PENDING  # a late success still counts
    else:
        if record.outcome is AttemptOutcome.FAILED:
            values["status"] = DeliveryStatus.FAILED.value
        else:
            values["next_attempt_at"] = record.next_attempt_at
        mine = and_(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.attempts == delivery.attempt,
        )
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery.id, mine).values(**values)
    )


# --- Reading --------------------------------------------------------------------------------


def list_deliveries(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID | None,
    before_id: int | None,
    limit: int,
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """Newest first, with their attempts in order; ``before_id`` pages."""
    query = select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
    if job_id is not None:
        query = query.where(WebhookDelivery.job_id == job_id)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    deliveries = list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))
    attempts: dict[int, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
        ):
            attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in deliveries]
