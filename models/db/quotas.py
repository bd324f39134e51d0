"""What a tenant has in flight and has submitted lately: the numbers its quotas compare."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.db.tables import Job
from models.domain.status import JobStatus


def active_cells(session: Session, *, tenant_id: uuid.UUID) -> int:
    """Cells of the tenant's queued and running jobs that have no outcome yet."""
    waiting = Job.total - Job.done - Job.failed - Job.cancelled
    active = session.scalar(
        select(func.coalesce(func.sum(waiting), 0)).where(
            Job.tenant_id == tenant_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
        )
    )
    return int(active or 0)


def cells_submitted_since(
    session: Session, *, tenant_id: uuid.UUID, since: datetime
) -> tuple[int, datetime | None]:
    """Cells of the tenant's jobs created after ``since``, and the oldest such job's time."""
    used, oldest = session.execute(
        select(func.coalesce(func.sum(Job.total), 0), func.min(Job.created_at)).where(
            Job.tenant_id == tenant_id, Job.created_at > since
        )
    ).one()
    return int(used or 0), oldest
