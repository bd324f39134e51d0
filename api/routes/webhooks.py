"""/v1/webhooks: the tenant's signing secret and the delivery log (also per job)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.auth import TenantId
from api.campaign_views import DeliveryPage, WebhookSecretOut, delivery_out
from api.deps import DbSession, Limit
from api.routes.jobs import TenantJob
from models.db.outbox import list_deliveries
from models.db.pagination import decode_cursor, encode_cursor
from models.db.webhook_secrets import rotate_secret, tenant_secret
from models.db.webhook_tables import WebhookSecret
from models.domain.webhook_signing import SIGNATURE_HEADER

router = APIRouter(tags=["webhooks"])

SCHEME = f"{SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.<body>')>"


def _secret_out(row: WebhookSecret) -> WebhookSecretOut:
    return WebhookSecretOut(secret=row.secret, created_at=row.created_at, header=SCHEME)


@router.get("/v1/webhooks/secret")
def get_secret(session: DbSession, tenant: TenantId) -> WebhookSecretOut:
    """The key your receiver verifies ``Farm-Signature`` with (made on first use)."""
    row = tenant_secret(session, tenant_id=tenant)
    session.commit()
    return _secret_out(row)


@router.post("/v1/webhooks/secret/rotate")
def rotate(session: DbSession, tenant: TenantId) -> WebhookSecretOut:
    """A new secret; every delivery attempt from now on is signed with it."""
    row = rotate_secret(session, tenant_id=tenant)
    session.commit()
    return _secret_out(row)


def _page(
    session: DbSession,
    tenant: uuid.UUID,
    job_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> DeliveryPage:
    before_id = None
    if cursor:
        (last,) = decode_cursor(cursor, [int])  # a CursorError is the API's 400
        assert isinstance(last, int)
        before_id = last
    rows = list_deliveries(
        session, tenant_id=tenant, job_id=job_id, before_id=before_id, limit=limit + 1
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1][0].id)
    return DeliveryPage(items=[delivery_out(d, a) for d, a in rows], next_cursor=next_cursor)


@router.get("/v1/webhooks/deliveries")
def deliveries(
    session: DbSession,
    tenant: TenantId,
    job_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> DeliveryPage:
    """Newest first, each with its attempts (status code, error, duration)."""
    return _page(session, tenant, job_id, cursor, limit)


@router.get("/v1/jobs/{job_id}/webhooks")
def job_deliveries(
    job: TenantJob, session: DbSession, cursor: str | None = None, limit: Limit = 50
) -> DeliveryPage:
    return _page(session, job.tenant_id, job.id, cursor, limit)
