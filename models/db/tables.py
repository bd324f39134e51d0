"""How jobs are stored: SQLAlchemy tables. The schema changes only through migrations/."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.domain.status import CellStatus, JobStatus, ShardStatus


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}  # noqa: RUF012


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_claim_at: Mapped[datetime | None] = mapped_column(default=None)  # fair-share order


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex, never the key
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell keys apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    spec: Mapped[dict[str, Any]]  # the request as the client sent it (validated)
    grid: Mapped[dict[str, Any]]  # the resolved grid: composed prompts, concrete seeds
    request_hash: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    render_ms_total: Mapped[int] = mapped_column(BigInteger, default=0)  # for the ETA
    version: Mapped[int] = mapped_column(Integer, default=1)  # bumped on every change: the ETag
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    last_claim_at: Mapped[datetime | None] = mapped_column(default=None)  # fair-share order
    # Business controls (migration 0011): pause, holds, the GPU budget, retention, the
    # last job.progress event, and sheets/gallery to redraw (an image was released).
    paused_at: Mapped[datetime | None] = mapped_column(default=None)
    held: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_gpu_ms: Mapped[int | None] = mapped_column(BigInteger, default=None)
    retention_s: Mapped[int | None] = mapped_column(Integer, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    expired_at: Mapped[datetime | None] = mapped_column(default=None)
    removed_objects: Mapped[int | None] = mapped_column(Integer, default=None)
    progress_at: Mapped[datetime | None] = mapped_column(default=None)
    progress_fraction: Mapped[float | None] = mapped_column(Float, default=None)
    artifacts_stale_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    # Refinements (migration 0014): the job a child was made from, and a parent's
    # children in the order they were made (NULL: none), for the job view.
    parent_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None, index=True)
    children: Mapped[list[Any] | None] = mapped_column(JSON, default=None)


class Item(Base):
    """One cell of the grid and, once rendered, its image."""

    __tablename__ = "items"
    __table_args__ = (
        Index("ix_items_job_shard", "job_id", "shard_index"),
        Index("ix_items_job_score", "job_id", "score"),
    )

    # No foreign key: its check ran once per cell, half the time of a 10,000-cell COPY.
    # Cells and shards are written only with their job (one transaction); on Postgres
    # a trigger deletes a deleted job's cells and shards (migration 0008).
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    shard_index: Mapped[int] = mapped_column(Integer)
    prompt_index: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text)
    bucket: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int] = mapped_column(Integer)
    guidance_scale: Mapped[float] = mapped_column(Float)
    sampler: Mapped[str] = mapped_column(String(32))
    # Prompt axes and hi-res fix (migration 0004): this cell's Prompt S/R value, the
    # emphasis mode (None: "original") and the hi-res pass (None: no hi-res fix).
    prompt_replace: Mapped[str | None] = mapped_column(Text, default=None)
    emphasis: Mapped[str | None] = mapped_column(String(16), default=None)
    hires_scale: Mapped[float | None] = mapped_column(Float, default=None)
    hires_strength: Mapped[float | None] = mapped_column(Float, default=None)
    hires_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    quality_tier: Mapped[str | None] = mapped_column(String(16), default=None)  # 0009
    # The cell's style and combinatorial wildcard values (migration 0010).
    style: Mapped[str | None] = mapped_column(Text, default=None)
    wildcard_values: Mapped[str | None] = mapped_column(Text, default=None)
    # The cell's LoRA set and its lora_sets axis value, as JSON lists of {name, weight,
    # sha256} (migration 0012; NULL: none, and no such axis).
    loras: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    lora_sets: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    status: Mapped[str] = mapped_column(String(16), default=CellStatus.QUEUED)
    key: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    rating: Mapped[str | None] = mapped_column(String(16))
    render_ms: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Screening and the ledger (migration 0011): held | released | deleted (None: never
    # held), and the device that rendered the cell (its GPU time is render_ms).
    hold: Mapped[str | None] = mapped_column(String(16), default=None)
    device: Mapped[str | None] = mapped_column(String(100), default=None)
    # The scorer's value and its label (migration 0013; NULL: not scored).
    score: Mapped[float | None] = mapped_column(Float, default=None)
    score_label: Mapped[str | None] = mapped_column(String(32), default=None)
    # A refinement's cell: its parent cell, and the parent PNG's sha256 its hi-res pass
    # started from (migration 0014; NULL: not a refinement, or its base was rendered).
    parent_job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    parent_index: Mapped[int | None] = mapped_column(Integer, default=None)
    base_sha256: Mapped[str | None] = mapped_column(String(64), default=None)


class Shard(Base):
    """A batch of cells rendered by one pipeline call; the unit a worker claims."""

    __tablename__ = "shards"
    __table_args__ = (
        UniqueConstraint("job_id", "index", name="uq_shards_job_index"),
        # The fair-share claim walks this: priority, then tenant, then job, then shard.
        Index("ix_shards_claim", "model", "status", "priority_rank", "tenant_id", "job_id", "id"),
        # The reconciler: queued per model, next queued ids, expired leases of running
        # shards; without it each is a scan of every shard ever made (migration 0005).
        Index("ix_shards_status", "status", "model", "priority_rank", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid)  # no foreign key: as Item.job_id
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    index: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    bucket: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
    priority_rank: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=ShardStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    available_at: Mapped[datetime | None] = mapped_column(default=None)  # retry backoff
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The LoRA set its cells share, weights aside (models.domain.loras.adapter_key; '':
    # none): the claim prefers the set a worker has active (migration 0012).
    adapters: Mapped[str] = mapped_column(Text, default="", server_default="")


class TenantRunning(Base):
    """How many shards of a tenant are rendering now, per model, split over 4 slots (the
    shard's id mod 4): the claim ranks tenants by the sum (farm_claim_shard v5). Postgres
    keeps it with triggers on ``shards`` (farm_count_running, migration 0017: why slots).
    SQLite's stepwise claim counts running shards itself and leaves it empty."""

    __tablename__ = "tenant_running"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(Integer)


class JobRunning(Base):
    """The same per job (farm_claim_shard v5 ranks a tenant's jobs by it); rows at zero
    wait for ``farm beat`` (models/db/running_counts.py)."""

    __tablename__ = "job_running"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(Integer)
