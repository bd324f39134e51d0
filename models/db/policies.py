"""Tenants as the operator sees them: their content policies, and finding them by name."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.db.business_tables import TenantPolicy
from models.db.tables import ApiKey, Job, Tenant, utcnow
from models.domain.policy import OPEN_POLICY, ContentPolicy

_POLICY_FIELDS = [f.name for f in fields(ContentPolicy)]


@dataclass(frozen=True)
class TenantInfo:
    id: uuid.UUID
    name: str
    created_at: datetime
    keys: int  # live API keys
    jobs: int
    policy: ContentPolicy


def _policy(row: TenantPolicy | None) -> ContentPolicy:
    if row is None:
        return OPEN_POLICY
    values = {name: getattr(row, name) for name in _POLICY_FIELDS}
    allowed = values["allowed_ratings"]
    values["allowed_ratings"] = None if allowed is None else frozenset(allowed)
    return ContentPolicy(**values)


def load_policy(session: Session, *, tenant_id: uuid.UUID) -> ContentPolicy:
    """The tenant's policy; no row is the open policy (no rules)."""
    return _policy(session.get(TenantPolicy, tenant_id))


def save_policy(session: Session, *, tenant_id: uuid.UUID, policy: ContentPolicy) -> None:
    """Replace the tenant's policy with ``policy`` (every rule at once)."""
    row = session.get(TenantPolicy, tenant_id)
    if row is None:
        row = TenantPolicy(tenant_id=tenant_id)
        session.add(row)
    for name in _POLICY_FIELDS:
        value = getattr(policy, name)
        if name == "allowed_ratings" and value is not None:
            value = sorted(value)
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.flush()


def tenant_by_name(session: Session, *, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def tenant_name(session: Session, *, tenant_id: uuid.UUID) -> str | None:
    return session.scalar(select(Tenant.name).where(Tenant.id == tenant_id))


def list_tenants(session: Session) -> list[TenantInfo]:
    keys = (
        select(ApiKey.tenant_id, func.count().label("n"))
        .where(ApiKey.revoked_at.is_(None))
        .group_by(ApiKey.tenant_id)
        .subquery()
    )
    jobs = select(Job.tenant_id, func.count().label("n")).group_by(Job.tenant_id).subquery()
    rows = session.execute(
        select(Tenant, TenantPolicy, keys.c.n, jobs.c.n)
        .outerjoin(TenantPolicy, TenantPolicy.tenant_id == Tenant.id)
        .outerjoin(keys, keys.c.tenant_id == Tenant.id)
        .outerjoin(jobs, jobs.c.tenant_id == Tenant.id)
        .order_by(Tenant.name)
    ).all()
    return [
        TenantInfo(t.id, t.name, t.created_at, key_count or 0, job_count or 0, _policy(p))
        for t, p, key_count, job_count in rows
    ]
