"""Per-tenant webhook signing secrets, made on first use (how they sign: webhook_signing)."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.db.tables import utcnow
from models.db.webhook_tables import WebhookSecret

__all__ = ["SECRET_PREFIX", "rotate_secret", "tenant_secret"]

SECRET_PREFIX = "whsec_"


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def tenant_secret(session: Session, *, tenant_id: uuid.UUID) -> WebhookSecret:
    """The tenant's signing secret, created on first use (safe against a concurrent first use)."""
    row = session.get(WebhookSecret, tenant_id)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = WebhookSecret(tenant_id=tenant_id, secret=_new_secret(), created_at=utcnow())
            session.add(row)
    except IntegrityError:  # another transaction created it first
        row = session.scalars(
            select(WebhookSecret).where(WebhookSecret.tenant_id == tenant_id)
        ).one()
    return row


def rotate_secret(session: Session, *, tenant_id: uuid.UUID) -> WebhookSecret:
    """Replace the secret: deliveries signed from now on use the new one."""
    row = tenant_secret(session, tenant_id=tenant_id)
    row.secret = _new_secret()
    row.created_at = utcnow()
    session.flush()
    return row
