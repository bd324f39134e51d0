"""The poll's reads: a key's tenant and a job's status columns, one query each.

``PolledJob`` is the one declaration of the columns a job's public view reads
(api/views.py): the SQLAlchemy query, the raw SQL of the API's async front door
(api/fast_poll.py) and the view all derive from its fields. The raw SQL is compiled
from the same SQLAlchemy statements the synchronous path runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Select, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from models.db.keys import TENANT_FOR_KEY
from models.db.tables import Job


@dataclass(frozen=True, slots=True)
class PolledJob:
    """A job as its status view reads it."""

    id: uuid.UUID
    status: str
    total: int
    done: int
    failed: int
    cancelled: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    name: str | None
    labels: dict[str, Any]
    model: str
    priority: str
    version: int
    # Business controls (migration 0011): pause, holds, GPU time and budget, retention.
    paused_at: datetime | None
    held: int
    render_ms_total: int
    max_gpu_ms: int | None
    retention_s: int | None
    expires_at: datetime | None
    expired_at: datetime | None
    removed_objects: int | None
    # Refinements (migration 0014): the job it was made from, and the jobs made from it.
    parent_job_id: uuid.UUID | None
    children: list[Any] | None

    @classmethod
    def of(cls, job: Job) -> PolledJob:
        """The view's columns of a loaded job."""
        return cls(**{f.name: getattr(job, f.name) for f in fields(cls)})


_POLLED: Final = select(*[getattr(Job, f.name) for f in fields(PolledJob)]).where(
    Job.id == bindparam("job_id"), Job.tenant_id == bindparam("tenant_id")
)


def _psycopg_sql(statement: Select[Any]) -> str:
    """``statement`` as psycopg's SQL text, with ``%(name)s`` parameters."""
    dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    return str(statement.compile(dialect=dialect))


POLLED_JOB_SQL: Final = _psycopg_sql(_POLLED)
TENANT_FOR_KEY_SQL: Final = _psycopg_sql(TENANT_FOR_KEY)


def polled_job(session: Session, *, tenant_id: uuid.UUID, job_id: uuid.UUID) -> PolledJob | None:
    row = session.execute(_POLLED, {"job_id": job_id, "tenant_id": tenant_id}).one_or_none()
    return None if row is None else PolledJob(*row)
