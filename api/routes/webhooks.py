"""/v1/webhooks: the tenant's signing secret and the delivery log (also per job).

Secrets are stored encrypted (models/infra/encryption.py) and shown only here. A
rotation starts a grace period (``FARM_WEBHOOK_SECRET_GRACE_S``, or ``grace_s`` in the
request) in which deliveries carry signatures by both secrets.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from api.auth import TenantId
from api.campaign_views import DeliveryPage, WebhookSecretOut, delivery_out
from api.deps import DbSession, Limit, State
from api.routes.jobs import TenantJob
from models.db.outbox import list_deliveries
from models.db.pagination import decode_cursor, encode_cursor
from models.db.webhook_secrets import SigningSecrets
from models.domain.webhook_signing import SIGNATURE_HEADER
from models.service.webhook_keys import current_secrets, rotate

router = APIRouter(tags=["webhooks"])

SCHEME = f"{SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.<body>')>"
HEADERS = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature: v1,<base64 HMAC-SHA256(base64-decoded secret, '<id>.<t>.<body>')>",
    SCHEME,
]


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Seconds the old secret keeps signing (null: FARM_WEBHOOK_SECRET_GRACE_S; 0: none).
    grace_s: Annotated[int, Field(ge=0, le=30 * 86400, strict=True)] | None = None


def _secret_out(found: SigningSecrets) -> WebhookSecretOut:
    return WebhookSecretOut(
        secret=found.current,
        created_at=found.created_at,
        header=SCHEME,
        headers=HEADERS,
        previous_valid_until=found.previous_until,
    )


@router.get("/v1/webhooks/secret")
def get_secret(session: DbSession, tenant: TenantId, state: State) -> WebhookSecretOut:
    """The key your receiver verifies deliveries with (made on first use)."""
    found = current_secrets(session, box=state.secret_box, tenant_id=tenant)
    session.commit()
    return _secret_out(found)


@router.post("/v1/webhooks/secret/rotate")
def rotate_secret(
    session: DbSession,
    tenant: TenantId,
    state: State,
    body: Annotated[RotateIn | None, Body()] = None,
) -> WebhookSecretOut:
    """A new secret; the old one keeps signing for the grace period, so receivers can
    switch without missing a delivery."""
    grace_s = state.settings.webhook_secret_grace_s
    if body is not None and body.grace_s is not None:
        grace_s = body.grace_s
    found = rotate(session, box=state.secret_box, tenant_id=tenant, grace_s=grace_s)
    session.commit()
    return _secret_out(found)


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
