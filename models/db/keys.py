"""Tenants and API keys. Keys are random, shown once, and stored only as a sha256 hash."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from models.db.tables import ApiKey, Tenant, utcnow

KEY_PREFIX = "farm_"


def hash_key(key: str) -> str:
    # A 256-bit random key needs no slow KDF: sha256 cannot be brute-forced back to it.
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    id: uuid.UUID
    tenant: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def ensure_tenant(session: Session, *, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_api_key(session: Session, *, tenant_name: str) -> str:
    """Create a key for the tenant (made if new) and return the plaintext key, once."""
    tenant = ensure_tenant(session, name=tenant_name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:12]))
    session.flush()
    return key


# A live key's tenant; the API's async poll door runs this statement too (models/db/poll.py).
TENANT_FOR_KEY: Final = select(ApiKey.tenant_id).where(
    ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None)
)


def tenant_for_key(session: Session, *, key: str) -> uuid.UUID | None:
    return session.scalar(TENANT_FOR_KEY, {"key_hash": hash_key(key)})


def list_api_keys(session: Session) -> list[KeyInfo]:
    rows = session.execute(
        select(ApiKey, Tenant.name).join(Tenant).order_by(Tenant.name, ApiKey.created_at)
    )
    return [
        KeyInfo(key.id, tenant, key.prefix, key.created_at, key.revoked_at) for key, tenant in rows
    ]


def revoke_api_key(session: Session, *, prefix: str) -> int:
    """Revoke every live key starting with ``prefix``; returns how many."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.prefix.startswith(prefix[:12]), ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
