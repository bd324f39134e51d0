"""Campaign tables: a scheduled grid and its runs (models/domain/schedule/ has the rules)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.db.tables import Base, utcnow


class Campaign(Base):
    """A grid spec re-submitted on a cron schedule (rules: models/domain/schedule/)."""

    __tablename__ = "campaigns"
    __table_args__ = (
        Index("ix_campaigns_tenant_created", "tenant_id", "created_at"),
        Index("ix_campaigns_next_fire", "next_fire_at"),  # the scheduler's due query
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    schedule: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]]  # a JobSpec, validated
    enabled: Mapped[bool]
    paused_by_failure: Mapped[bool] = mapped_column(default=False)
    seed_policy: Mapped[str] = mapped_column(String(16))
    max_images_per_run: Mapped[int | None] = mapped_column(Integer)
    end_at: Mapped[datetime | None] = mapped_column(default=None)
    overlap: Mapped[str] = mapped_column(String(16))
    catchup_window_s: Mapped[int] = mapped_column(Integer)
    coalesce: Mapped[bool] = mapped_column(default=True)
    pause_on_failure: Mapped[bool] = mapped_column(default=False)
    jitter_s: Mapped[int] = mapped_column(Integer, default=0)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # A refinement of each run's job once it finishes (models/domain/refine.py RefineIn;
    # NULL: none). Migration 0014.
    refine: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    last_scheduled_for: Mapped[datetime | None] = mapped_column(default=None)  # the watermark
    resumed_at: Mapped[datetime | None] = mapped_column(default=None)
    next_fire_at: Mapped[datetime | None] = mapped_column(default=None)  # None: nothing due
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignRun(Base):
    """One tick of a campaign: a job, a buffered start, or a recorded skip."""

    __tablename__ = "campaign_runs"
    __table_args__ = (
        # Exactly once: a tick is materialised by one transaction, whichever scheduler wins.
        UniqueConstraint("campaign_id", "scheduled_for", name="uq_campaign_runs_tick"),
        Index("ix_campaign_runs_status", "status"),  # active runs: started, buffered
        Index("ix_campaign_runs_job", "job_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    scheduled_for: Mapped[datetime]
    origin: Mapped[str] = mapped_column(String(16))  # schedule | manual | backfill
    status: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    refine_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)  # 0014
