"""The scheduler's queries: which campaigns have work, taken one at a time.

Every campaign is taken with ``FOR UPDATE SKIP LOCKED``: two ``farm beat``
processes never work on the same campaign at once, and neither waits for the other.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.db.campaign_tables import Campaign, CampaignRun
from models.db.campaigns import ACTIVE_JOB_STATUSES, RunStatus
from models.db.tables import Job

__all__ = ["earliest_next_fire", "lock_if_free", "lock_next_due", "to_settle"]


def to_settle(session: Session) -> list[uuid.UUID]:
    """Campaigns with a started run whose job has finished, or with a buffered run."""
    finished = (
        select(CampaignRun.campaign_id)
        .join(Job, Job.id == CampaignRun.job_id)
        .where(CampaignRun.status == RunStatus.STARTED, Job.status.not_in(ACTIVE_JOB_STATUSES))
    )
    buffered = select(CampaignRun.campaign_id).where(CampaignRun.status == RunStatus.BUFFERED)
    return sorted(set(session.scalars(finished)) | set(session.scalars(buffered)))


def lock_if_free(session: Session, *, campaign_id: uuid.UUID) -> Campaign | None:
    """The campaign, locked; None if it is gone or another transaction holds it."""
    query = select(Campaign).where(Campaign.id == campaign_id).with_for_update(skip_locked=True)
    return session.scalars(query).first()


def lock_next_due(session: Session, *, now: datetime, skip: set[uuid.UUID]) -> Campaign | None:
    """The active campaign due longest ago (not in ``skip``), locked; None when none is free."""
    query = select(Campaign).where(
        Campaign.next_fire_at <= now,
        Campaign.enabled.is_(True),
        Campaign.paused_by_failure.is_(False),
    )
    if skip:
        query = query.where(Campaign.id.not_in(skip))
    query = query.order_by(Campaign.next_fire_at).limit(1).with_for_update(skip_locked=True)
    return session.scalars(query).first()


def earliest_next_fire(session: Session) -> datetime | None:
    """When the scheduler next has work for an active campaign (None: for none)."""
    return session.scalar(
        select(func.min(Campaign.next_fire_at)).where(
            Campaign.enabled.is_(True), Campaign.paused_by_failure.is_(False)
        )
    )
