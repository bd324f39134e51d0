"""Tables of the business controls: tenant policies, the GPU-second ledger, per-cell image
analyses (screening), and storage deletions waiting for the sweep (migration 0011)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy import Uuid as UuidType
from sqlalchemy.orm import Mapped, mapped_column

from models.db.tables import Base, BigId, utcnow


class TenantPolicy(Base):
    """The operator's rules for one tenant (models/domain/policy.py); no row: no rules."""

    __tablename__ = "tenant_policies"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    allowed_ratings: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    forced_rating: Mapped[str | None] = mapped_column(String(16), default=None)
    forced_negative: Mapped[str | None] = mapped_column(Text, default=None)
    screening_threshold: Mapped[float | None] = mapped_column(Float, default=None)
    retention_s: Mapped[int | None] = mapped_column(Integer, default=None)
    max_retention_s: Mapped[int | None] = mapped_column(Integer, default=None)
    monthly_gpu_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    metrics_by_name: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class GpuUsage(Base):
    """The ledger: one row per recorded shard attempt, what its pipeline call cost.

    No foreign key to the job: the ledger outlives a deleted job (it is what was
    spent); it goes with its tenant.
    """

    __tablename__ = "gpu_usage"
    __table_args__ = (Index("ix_gpu_usage_tenant_time", "tenant_id", "recorded_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(UuidType)
    model: Mapped[str] = mapped_column(String(200))
    device: Mapped[str] = mapped_column(String(100))
    shard_index: Mapped[int] = mapped_column(Integer)
    cells: Mapped[int] = mapped_column(Integer)
    gpu_ms: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class CellAnalysis(Base):
    """One analyzer's result for one cell (worker/analysis.py): a label and a score."""

    __tablename__ = "cell_analyses"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    cell_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    analyzer: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(100))
    score: Mapped[float] = mapped_column(Float)
    analysis_ms: Mapped[int] = mapped_column(Integer)


class StorageDeletion(Base):
    """A folder to empty: a deleted job or tenant, or an expired job's files.

    Written in the transaction that decided it; the sweep (``farm beat``) deletes the
    objects, then once more after ``FARM_STORAGE_DELETE_GRACE_S`` (a worker may still
    have been writing), then drops the row.
    """

    __tablename__ = "storage_deletions"
    __table_args__ = (Index("ix_storage_deletions_due", "not_before"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    prefix: Mapped[str] = mapped_column(Text)
    job_id: Mapped[uuid.UUID | None] = mapped_column(UuidType, default=None)  # expiry counts
    reason: Mapped[str] = mapped_column(String(16))  # expired | job_deleted | tenant_deleted
    passes: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
