"""/v1/usage: the tenant's GPU seconds from the ledger, by day, job or model, and where it
stands against its monthly budget."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.auth import TenantId
from api.deps import DbSession
from models.db.ledger import UsageRow, gpu_ms_since, usage_report
from models.db.policies import load_policy
from models.domain.spec import FieldError, SpecError
from models.domain.usage import GroupBy, month_start

router = APIRouter(tags=["usage"])


class UsageItem(BaseModel):
    key: str  # the day (YYYY-MM-DD, UTC), the job id, or the model
    cells: int
    gpu_seconds: float
    shards: int
    devices: list[str]
    model: str | None  # with group_by=job: the job's model


class UsageTotal(BaseModel):
    cells: int
    gpu_seconds: float


class Budget(BaseModel):
    monthly_gpu_seconds: float | None  # null: no monthly budget
    used_this_month: float  # calendar month, UTC
    remaining: float | None


class UsageOut(BaseModel):
    start: datetime
    end: datetime
    group_by: GroupBy
    total: UsageTotal
    items: list[UsageItem]
    budget: Budget


def _utc(moment: datetime, field: str) -> datetime:
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # an offset that takes year 1 or 9999 out of range
        raise SpecError([FieldError(field, "out of range once converted to UTC")]) from None


def budget_of(session: Session, tenant_id: uuid.UUID, now: datetime) -> Budget:
    budget = load_policy(session, tenant_id=tenant_id).monthly_gpu_seconds
    used = gpu_ms_since(session, tenant_id=tenant_id, since=month_start(now)) / 1000
    remaining = None if budget is None else round(max(0.0, budget - used), 3)
    return Budget(monthly_gpu_seconds=budget, used_this_month=round(used, 3), remaining=remaining)


def _item(row: UsageRow) -> UsageItem:
    return UsageItem(
        key=row.key,
        cells=row.cells,
        gpu_seconds=row.gpu_seconds,
        shards=row.shards,
        devices=row.devices,
        model=row.model,
    )


@router.get("/v1/usage")
def usage(
    session: DbSession,
    tenant: TenantId,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    group_by: GroupBy = "day",
) -> UsageOut:
    """GPU seconds in ``[from, to)`` (default: this calendar month, UTC, until now);
    a time without a zone is UTC."""
    now = datetime.now(UTC)
    end_at = now if end is None else _utc(end, "to")
    start_at = month_start(now) if start is None else _utc(start, "from")
    if start_at >= end_at:
        raise SpecError([FieldError("to", "must be later than from")])
    rows = usage_report(session, tenant_id=tenant, start=start_at, end=end_at, group_by=group_by)
    total = UsageTotal(
        cells=sum(r.cells for r in rows),
        gpu_seconds=round(sum(r.gpu_seconds for r in rows), 3),
    )
    return UsageOut(
        start=start_at,
        end=end_at,
        group_by=group_by,
        total=total,
        items=[_item(r) for r in rows],
        budget=budget_of(session, tenant, now),
    )
