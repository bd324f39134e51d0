"""Request dependencies: a DB session, the caller's tenant, a job of that tenant."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ApiError
from api.limits import RateLimiter
from models.db.jobs import get_job
from models.db.keys import tenant_for_key
from models.db.tables import Job
from models.infra.queue import Publisher
from models.infra.settings import Settings
from models.infra.storage import Storage


@dataclass
class AppState:
    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    publisher: Publisher
    limiter: RateLimiter


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.farm
    return state


State = Annotated[AppState, Depends(get_state)]


def get_session(state: State) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


def get_tenant(request: Request, session: DbSession, state: State) -> uuid.UUID:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = tenant_for_key(session, key=key.strip())
    if tenant is None:
        raise ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    state.limiter.check(tenant)
    return tenant


TenantId = Annotated[uuid.UUID, Depends(get_tenant)]


def get_tenant_job(job_id: str, tenant: TenantId, session: DbSession) -> Job:
    """Load a job of the caller's tenant, or 404: another tenant's job does not exist."""
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        raise ApiError(404, f"no job {job_id!r}") from None
    job = get_job(session, tenant_id=tenant, job_id=parsed)
    if job is None:
        raise ApiError(404, f"no job {job_id!r}")
    return job


TenantJob = Annotated[Job, Depends(get_tenant_job)]
