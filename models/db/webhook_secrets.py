"""Per-tenant webhook signing secrets: made on first use, stored encrypted, rotated with a
grace period in which the previous secret still signs (how they sign: webhook_signing).

The encryption is the caller's (``Cipher``: models/infra/encryption.SecretBox); this
module only ever stores ciphertext. Rows written before secrets were encrypted keep
their plaintext until they are next read (``tenant_secrets``) or swept
(``encrypt_plaintext``, run by every retention sweep); then it is cleared.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.db.tables import utcnow
from models.db.webhook_tables import WebhookSecret

__all__ = [
    "SECRET_PREFIX",
    "Cipher",
    "SigningSecrets",
    "encrypt_plaintext",
    "rotate_secret",
    "tenant_secrets",
]

SECRET_PREFIX = "whsec_"


class Cipher(Protocol):
    def encrypt(self, plaintext: str) -> str: ...
    def decrypt(self, ciphertext: str) -> str: ...


@dataclass(frozen=True)
class SigningSecrets:
    current: str
    created_at: datetime
    previous: str | None = None
    previous_until: datetime | None = None

    def signing(self, now: datetime) -> list[str]:
        """The secrets that sign a delivery at ``now``: the current one first."""
        keep = self.previous and self.previous_until and self.previous_until > now
        return [self.current, self.previous] if keep and self.previous else [self.current]


def new_secret() -> str:
    """``whsec_`` and 24 random bytes in standard base64 (Standard Webhooks' form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _encrypted(row: WebhookSecret, cipher: Cipher) -> WebhookSecret:
    """The row with its legacy plaintext (if any) encrypted and cleared."""
    if row.secret is not None:
        row.ciphertext = cipher.encrypt(row.secret)
        row.secret = None
    return row


def _of(row: WebhookSecret, cipher: Cipher) -> SigningSecrets:
    assert row.ciphertext is not None
    previous = None if row.previous_ciphertext is None else cipher.decrypt(row.previous_ciphertext)
    return SigningSecrets(
        current=cipher.decrypt(row.ciphertext),
        created_at=row.created_at,
        previous=previous,
        previous_until=row.previous_until if previous else None,
    )


def _row(session: Session, tenant_id: uuid.UUID, cipher: Cipher) -> WebhookSecret:
    row = session.get(WebhookSecret, tenant_id)
    if row is not None:
        return _encrypted(row, cipher)
    try:
        with session.begin_nested():
            row = WebhookSecret(
                tenant_id=tenant_id, ciphertext=cipher.encrypt(new_secret()), created_at=utcnow()
            )
            session.add(row)
    except IntegrityError:  # another transaction created it first
        row = session.scalars(
            select(WebhookSecret).where(WebhookSecret.tenant_id == tenant_id)
        ).one()
    return _encrypted(row, cipher)


def tenant_secrets(session: Session, *, tenant_id: uuid.UUID, cipher: Cipher) -> SigningSecrets:
    """The tenant's secrets, the current one made on first use (safe against a
    concurrent first use). ``InvalidToken`` if the configured keys cannot decrypt them."""
    return _of(_row(session, tenant_id, cipher), cipher)


def rotate_secret(
    session: Session, *, tenant_id: uuid.UUID, cipher: Cipher, grace_s: int
) -> SigningSecrets:
    """A new current secret; the old one keeps signing for ``grace_s`` seconds (0: none)."""
    row = _row(session, tenant_id, cipher)
    now = utcnow()
    row.previous_ciphertext = row.ciphertext if grace_s > 0 else None
    row.previous_until = now + timedelta(seconds=grace_s) if grace_s > 0 else None
    row.ciphertext = cipher.encrypt(new_secret())
    row.created_at = now
    session.flush()
    return _of(row, cipher)


def encrypt_plaintext(session: Session, *, cipher: Cipher, limit: int = 500) -> int:
    """Encrypt rows still holding a plaintext secret (from before encryption); returns
    how many. Expired previous secrets are dropped on the way."""
    rows = session.scalars(
        select(WebhookSecret).where(WebhookSecret.secret.is_not(None)).limit(limit)
    ).all()
    for row in rows:
        _encrypted(row, cipher)
    now = utcnow()
    stale = session.scalars(
        select(WebhookSecret).where(WebhookSecret.previous_until < now).limit(limit)
    ).all()
    for row in stale:
        row.previous_ciphertext = row.previous_until = None
    session.flush()
    return len(rows)
