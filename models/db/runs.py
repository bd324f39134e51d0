"""Reading a campaign's runs for the runs service (models/service/campaign_runs.py).

Every statement here runs inside the transaction that holds the campaign's row lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.campaign_tables import CampaignRun
from models.db.campaigns import ACTIVE_JOB_STATUSES, RunStatus
from models.db.tables import Job


def rendering_runs(session: Session, *, campaign_id: uuid.UUID) -> list[tuple[CampaignRun, Job]]:
    """Started runs whose job is still queued or running."""
    rows = session.execute(
        select(CampaignRun, Job)
        .join(Job, Job.id == CampaignRun.job_id)
        .where(
            CampaignRun.campaign_id == campaign_id,
            CampaignRun.status == RunStatus.STARTED,
            Job.status.in_(ACTIVE_JOB_STATUSES),
        )
    )
    return [(run, job) for run, job in rows]


def buffered_runs(session: Session, *, campaign_id: uuid.UUID) -> list[CampaignRun]:
    """Runs waiting for the running one, oldest tick first."""
    return list(
        session.scalars(
            select(CampaignRun)
            .where(CampaignRun.campaign_id == campaign_id, CampaignRun.status == RunStatus.BUFFERED)
            .order_by(CampaignRun.scheduled_for)
        )
    )


def recorded_ticks(
    session: Session, *, campaign_id: uuid.UUID, ticks: Sequence[datetime]
) -> set[datetime]:
    """Which of ``ticks`` already have a run (a backfill may have got there first)."""
    return set(
        session.scalars(
            select(CampaignRun.scheduled_for).where(
                CampaignRun.campaign_id == campaign_id, CampaignRun.scheduled_for.in_(ticks)
            )
        )
    )


def finished_runs(session: Session, *, campaign_id: uuid.UUID) -> list[tuple[CampaignRun, str]]:
    """Started runs whose job has finished, with the job's status, oldest tick first."""
    rows = session.execute(
        select(CampaignRun, Job.status)
        .join(Job, Job.id == CampaignRun.job_id)
        .where(
            CampaignRun.campaign_id == campaign_id,
            CampaignRun.status == RunStatus.STARTED,
            Job.status.not_in(ACTIVE_JOB_STATUSES),
        )
        .order_by(CampaignRun.scheduled_for)
    )
    return [(run, status) for run, status in rows]


def runs_at(
    session: Session, *, campaign_id: uuid.UUID, ticks: Sequence[datetime]
) -> dict[datetime, tuple[CampaignRun, Job | None]]:
    """The runs recorded for ``ticks``, each with its job (None for skips, buffered runs)."""
    rows = session.execute(
        select(CampaignRun, Job)
        .outerjoin(Job, Job.id == CampaignRun.job_id)
        .where(CampaignRun.campaign_id == campaign_id, CampaignRun.scheduled_for.in_(ticks))
    )
    return {run.scheduled_for: (run, job) for run, job in rows}
