"""Finishing a shard in a statement transaction of its own, then settling the job.

``finish_attempt`` (models/db/finish.py) records a shard and settles the job in the
caller's transaction: the job row's counters, updated by ``farm_finish_shard()``, stay
locked until the caller's COMMIT, a client round trip later, and every other finisher of
that job waits for it (bench/fleet.py: one 100,000-cell job, 1,000 workers). Here the
function is the whole transaction, so the row is free as soon as the statement ends,
and that transaction commits without waiting for its WAL flush (``synchronous_commit``
off for it alone): a synchronous commit keeps the row locked through the flush, which
then paces every finisher of the job (one fsync each). What that risks: if Postgres
itself crashes, the last fraction of a second of finishes is lost whole (never half:
WAL order holds), their shards' leases lapse and the cells are rendered again and
recorded once; a settle is a synchronous commit and flushes every finish before it.

Settling the job (status, retention, the ``job.completed`` webhook) then needs its own
transaction: the finisher whose counters reached the total locks the job, reads them
again and settles it; the status guard in ``settle_job`` makes that happen once whoever
else tries. A process that dies between the two leaves a job with every cell counted
and an open status: ``farm beat`` settles it (``settle_complete_jobs``, beat/retention.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Unpack

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.finish import (
    ShardCompletion,
    finish_attempt,
    settle_job,
)
from models.db.finish_extras import record_extras
from models.db.finish_sql import JOB_COLUMNS, FinishArgs, finish_row
from models.db.session import statement_transactions
from models.db.tables import Job, utcnow
from models.domain.status import JobStatus, final_job_status


def finish_committed(
    sessions: sessionmaker[Session], *, device: str | None = None, **finish: Unpack[FinishArgs]
) -> ShardCompletion:
    """``finish_attempt`` with the finish committed by itself (module docstring);
    ``device``: with the attempt's ledger row and its cells' device, in that statement
    (Postgres; the GPU worker's common record, models/db/record_attempt.py)."""
    if sessions.kw["bind"].dialect.name != "postgresql":  # SQLite: one transaction
        with sessions.begin() as session:
            if device is not None:
                record_extras(
                    session,
                    shard=finish["shard"],
                    results=finish["results"],
                    analyses=[],
                    device=device,
                    now=utcnow(),
                )
            return finish_attempt(session, **finish)
    with statement_transactions(sessions) as session:
        row = finish_row(session, asynchronous=True, device=device, **finish)
    final = settle_after_finish(sessions, job_id=finish["shard"].job_id, row=row)
    return ShardCompletion(row.recorded, row.failed, row.requeued, final, row.follow_up)


def settle_after_finish(
    sessions: sessionmaker[Session], *, job_id: uuid.UUID, row: Sequence[Any]
) -> JobStatus | None:
    """The settle's own transaction, if ``farm_finish_shard()``'s ``row`` shows an open
    job whose every cell is counted (module docstring); None otherwise."""
    status, total, done, failed, cancelled = row[JOB_COLUMNS]
    open_job = status in (JobStatus.QUEUED, JobStatus.RUNNING)
    counted = final_job_status(total=total, done=done, failed=failed, cancelled=cancelled)
    if not open_job or counted is None:
        return None
    with sessions.begin() as session:
        return settle_if_complete(session, job_id=job_id)


def settle_if_complete(session: Session, *, job_id: uuid.UUID) -> JobStatus | None:
    """Lock the job, read its counters and settle it if every cell has its outcome;
    None if it is not complete or was settled already."""
    job = session.execute(
        select(Job.status, Job.total, Job.done, Job.failed, Job.cancelled)
        .where(Job.id == job_id)
        .with_for_update()
    ).one_or_none()
    if job is None:
        return None
    return settle_job(
        session,
        job_id=job_id,
        status=job.status,
        total=job.total,
        done=job.done,
        failed=job.failed,
        cancelled=job.cancelled,
    )


def settle_complete_jobs(session: Session, *, limit: int = 100) -> int:
    """``farm beat``'s part: settle open jobs whose every cell is counted (a finisher
    died between its finish and the settle). Returns how many it settled."""
    ids = session.scalars(
        select(Job.id)
        .where(
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
            Job.done + Job.failed + Job.cancelled >= Job.total,
        )
        .limit(limit)
    ).all()
    return sum(settle_if_complete(session, job_id=i) is not None for i in ids)
