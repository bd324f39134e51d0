"""/v1/admin: the operator's API (``FARM_ADMIN_KEYS``; tenant keys get 403).

Tenants and their content policies, deleting a tenant, and held images: list them
(with a short-lived URL to look at each), release or delete them. ``farm tenants``
does the same from the command line (docs/OPERATIONS.md).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi import Path as FastApiPath
from pydantic import BaseModel

from api.auth import Operator
from api.deps import DbSession, Limit, State, owned_or_404
from api.errors import ApiError
from api.routes.usage import Budget, budget_of
from api.schemas import ImageOut
from api.views import image_out
from models.db.holds import analyses_of, list_held
from models.db.policies import TenantInfo, list_tenants, load_policy, save_policy, tenant_by_name
from models.db.tables import Job, Tenant
from models.domain.policy import PolicyIn, policy_in
from models.service.holds import NotHeld, delete_held, release
from models.service.retention import delete_tenant

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Operator])
REVIEW_URL_S = 600  # an operator's look at a held image
CellIndex = Annotated[int, FastApiPath(ge=0, le=2**31 - 1)]


class TenantOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    keys: int
    jobs: int
    policy: PolicyIn


class TenantDetail(TenantOut):
    budget: Budget


class TenantList(BaseModel):
    items: list[TenantOut]


class HeldOut(BaseModel):
    job_id: uuid.UUID
    tenant_id: uuid.UUID
    cell: ImageOut  # its url: a short look for the operator, never shown to the tenant


class HeldPage(BaseModel):
    items: list[HeldOut]
    next_cursor: str | None


def _tenant_out(info: TenantInfo) -> TenantOut:
    return TenantOut(
        id=info.id,
        name=info.name,
        created_at=info.created_at,
        keys=info.keys,
        jobs=info.jobs,
        policy=policy_in(info.policy),
    )


def _tenant(session: DbSession, name: str) -> Tenant:
    # A name no tenant can have (too long, NUL: Postgres refuses it) is simply not there.
    valid = 0 < len(name) <= 100 and "\x00" not in name
    tenant = tenant_by_name(session, name=name) if valid else None
    if tenant is None:
        raise ApiError(404, f"no tenant {name!r}")
    return tenant


@router.get("/tenants")
def tenants(session: DbSession) -> TenantList:
    return TenantList(items=[_tenant_out(t) for t in list_tenants(session)])


@router.get("/tenants/{name}")
def tenant(name: str, session: DbSession) -> TenantDetail:
    found = _tenant(session, name)
    [info] = [t for t in list_tenants(session) if t.id == found.id]
    budget = budget_of(session, found.id, datetime.now(UTC))
    return TenantDetail(**_tenant_out(info).model_dump(), budget=budget)


@router.put("/tenants/{name}/policy")
def put_policy(name: str, body: PolicyIn, session: DbSession) -> PolicyIn:
    """Replace the tenant's policy (every rule at once; ``{}`` removes them all). Workers
    and API processes apply it within seconds; jobs already queued keep their text."""
    found = _tenant(session, name)
    save_policy(session, tenant_id=found.id, policy=body.policy())
    session.commit()
    return policy_in(load_policy(session, tenant_id=found.id))


@router.delete("/tenants/{name}", status_code=204)
def remove_tenant(name: str, session: DbSession, state: State) -> Response:
    """The tenant, its keys, jobs, campaigns, policy and ledger; its stored objects by the
    next retention sweep."""
    found = _tenant(session, name)
    delete_tenant(session, settings=state.settings, tenant_id=found.id)
    session.commit()
    return Response(status_code=204)


@router.get("/held")
def held(
    session: DbSession,
    state: State,
    tenant: str | None = None,
    cursor: str | None = None,
    limit: Limit = 100,
) -> HeldPage:
    """Images screening held, by job; ``tenant`` (a name) narrows the list."""
    tenant_id = None if tenant is None else _tenant(session, tenant).id
    page = list_held(session, tenant_id=tenant_id, cursor=cursor, limit=limit)
    items = [
        HeldOut(
            job_id=h.item.job_id,
            tenant_id=h.tenant_id,
            cell=image_out(h.item, state.storage, expires_s=REVIEW_URL_S, analyses=h.analyses),
        )
        for h in page.items
    ]
    return HeldPage(items=items, next_cursor=page.next_cursor)


def _job(session: DbSession, job_id: str) -> Job:
    return owned_or_404("job", job_id, lambda i: session.get(Job, i))


@router.post("/jobs/{job_id}/cells/{index}/release")
def release_cell(job_id: str, index: CellIndex, session: DbSession, state: State) -> ImageOut:
    """The image moves to its ordinary key: listed again, and back in the job's sheets,
    manifest and gallery once a worker redraws them (within FARM_ARTIFACT_REFRESH_S)."""
    job = _job(session, job_id)
    try:
        item = release(
            session, settings=state.settings, storage=state.storage, job=job, index=index
        )
    except NotHeld as exc:
        session.rollback()
        raise ApiError(404, str(exc)) from None
    session.commit()
    found = analyses_of(session, job_id=job.id, indexes=[index]).get(index)
    return image_out(item, state.storage, expires_s=REVIEW_URL_S, analyses=found)


@router.delete("/jobs/{job_id}/cells/{index}", status_code=204)
def delete_cell(job_id: str, index: CellIndex, session: DbSession, state: State) -> Response:
    """Delete a held image for good: the cell stays, without an image."""
    job = _job(session, job_id)
    try:
        delete_held(session, storage=state.storage, job=job, index=index)
    except NotHeld as exc:
        session.rollback()
        raise ApiError(404, str(exc)) from None
    session.commit()
    return Response(status_code=204)
