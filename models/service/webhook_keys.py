"""Webhook signing secrets as the API and the sender use them: decrypted with the
configured keys (models/infra/encryption.py), stored encrypted (models/db/webhook_secrets.py)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from models.db.webhook_secrets import (
    SigningSecrets,
    encrypt_plaintext,
    rotate_secret,
    tenant_secrets,
)
from models.infra.encryption import InvalidToken, SecretBox

log = logging.getLogger(__name__)


class SecretsUnreadable(Exception):
    """The configured encryption keys cannot decrypt a tenant's secret."""


def current_secrets(session: Session, *, box: SecretBox, tenant_id: uuid.UUID) -> SigningSecrets:
    try:
        return tenant_secrets(session, tenant_id=tenant_id, cipher=box)
    except InvalidToken:
        raise SecretsUnreadable(
            f"the webhook secret of tenant {tenant_id} was encrypted with a key that is not in "
            "FARM_ENCRYPTION_KEYS (or FARM_SECRET_KEY changed): every API and beat process "
            "needs the same keys"
        ) from None


def signing_secrets(
    session: Session, *, box: SecretBox, tenant_id: uuid.UUID, now: datetime
) -> list[str]:
    """The secrets that sign a delivery now: the current one, then one in its grace."""
    return current_secrets(session, box=box, tenant_id=tenant_id).signing(now)


def rotate(
    session: Session, *, box: SecretBox, tenant_id: uuid.UUID, grace_s: int
) -> SigningSecrets:
    try:
        return rotate_secret(session, tenant_id=tenant_id, cipher=box, grace_s=grace_s)
    except InvalidToken:
        raise SecretsUnreadable(
            f"cannot decrypt the webhook secret of tenant {tenant_id}"
        ) from None


def encrypt_leftovers(session: Session, *, box: SecretBox) -> int:
    """Secrets stored before encryption, encrypted now (the retention sweep runs this)."""
    count = encrypt_plaintext(session, cipher=box)
    if count:
        log.info("encrypted %d webhook secret(s) stored in plaintext", count)
    return count
