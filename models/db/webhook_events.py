"""Queueing the events beside ``job.completed``: ``job.progress``, ``job.paused``,
``job.resumed`` and ``cell.held`` (models/domain/webhook_events.py), in the transaction
that caused them, to the job's ``webhook_url``. The outbox (models/db/outbox.py) sends
them like any other delivery."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.outbox import DeliveryStatus, job_payload
from models.db.tables import Job, utcnow
from models.db.webhook_tables import WebhookDelivery


def job_webhook_url(session: Session, *, job_id: uuid.UUID) -> str | None:
    return session.scalar(select(Job.spec["webhook_url"].as_string()).where(Job.id == job_id))


def enqueue_event(
    session: Session,
    *,
    job_id: uuid.UUID,
    event: str,
    extra: dict[str, Any] | None = None,
    url: str | None = None,
) -> int | None:
    """Queue ``event`` with the job's state (and ``extra``) if the job has a webhook URL
    (``url``: already looked up); returns the delivery's id, or None."""
    url = url or job_webhook_url(session, job_id=job_id)
    if not url:
        return None
    tenant_id, data = job_payload(session, job_id=job_id)
    now = utcnow()
    delivery = WebhookDelivery(
        event_id=uuid.uuid4(),
        tenant_id=tenant_id,
        job_id=job_id,
        event=event,
        url=url,
        payload={**data, **(extra or {})},
        status=DeliveryStatus.PENDING.value,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    return delivery.id
