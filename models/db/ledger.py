"""The GPU-second ledger: what each recorded shard attempt cost, and reports over it.

A row per shard attempt (``gpu_usage``), written in the transaction that records the
attempt's cells; each cell also carries its share (``items.render_ms``) and the device
(``items.device``). A cell rendered twice (a worker lost its lease mid-render and
another rendered it again) costs twice: the GPU time was spent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from models.db.business_tables import GpuUsage
from models.domain.usage import GroupBy


def record_usage(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
    shard_index: int,
    model: str,
    device: str,
    cells: int,
    gpu_ms: int,
    now: datetime,
) -> None:
    session.add(
        GpuUsage(
            tenant_id=tenant_id,
            job_id=job_id,
            model=model,
            device=device,
            shard_index=shard_index,
            cells=cells,
            gpu_ms=gpu_ms,
            recorded_at=now,
        )
    )


def gpu_ms_since(session: Session, *, tenant_id: uuid.UUID, since: datetime) -> int:
    """The tenant's GPU milliseconds recorded at or after ``since`` (its monthly budget)."""
    used = session.scalar(
        select(func.coalesce(func.sum(GpuUsage.gpu_ms), 0)).where(
            GpuUsage.tenant_id == tenant_id, GpuUsage.recorded_at >= since
        )
    )
    return int(used or 0)


@dataclass(frozen=True)
class UsageRow:
    key: str  # the day (YYYY-MM-DD, UTC), the job id or the model
    cells: int
    gpu_seconds: float
    shards: int
    devices: list[str]
    model: str | None = None  # for group_by=job: the job's model


def _day(session: Session) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", GpuUsage.recorded_at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", GpuUsage.recorded_at)  # stored as UTC text


def usage_report(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
    limit: int = 10_000,
) -> list[UsageRow]:
    """The tenant's usage in [start, end), one row per day, job or model, in key order."""
    key: ColumnElement[Any] = (
        _day(session)
        if group_by == "day"
        else (GpuUsage.job_id if group_by == "job" else GpuUsage.model).expression
    )
    rows = session.execute(
        select(
            key.label("key"),
            func.sum(GpuUsage.cells),
            func.sum(GpuUsage.gpu_ms),
            func.count(),
            func.min(GpuUsage.model),
        )
        .where(
            GpuUsage.tenant_id == tenant_id,
            GpuUsage.recorded_at >= start,
            GpuUsage.recorded_at < end,
        )
        .group_by(key)
        .order_by(key)
        .limit(limit)
    ).all()
    devices = _devices(session, tenant_id=tenant_id, start=start, end=end, key=key)
    return [
        UsageRow(
            key=str(k),
            cells=int(cells),
            gpu_seconds=round(int(gpu_ms) / 1000, 3),
            shards=int(shards),
            devices=devices.get(str(k), []),
            model=model if group_by == "job" else None,
        )
        for k, cells, gpu_ms, shards, model in rows
    ]


def _devices(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    start: datetime,
    end: datetime,
    key: ColumnElement[Any],
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for k, device in session.execute(
        select(key, GpuUsage.device)
        .where(
            GpuUsage.tenant_id == tenant_id,
            GpuUsage.recorded_at >= start,
            GpuUsage.recorded_at < end,
        )
        .group_by(key, GpuUsage.device)
        .order_by(GpuUsage.device)
    ):
        found.setdefault(str(k), []).append(device)
    return found
