"""Finishing an attempt at a shard: images that landed, cells that failed, the job's
counters and, when every cell has its outcome, the job's terminal status.

Every transition is a conditional UPDATE, so a late worker changes nothing that
another already did. On Postgres the steps up to the job's counters run inside
``farm_finish_shard()`` (``models/db/sql/farm_finish_shard/``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Unpack

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models.db.claims import ClaimedShard, share_job
from models.db.finish_sql import FinishArgs, finish_row
from models.db.outbox import enqueue_job_completed
from models.db.retention import set_expiry
from models.db.tables import Item, Job, Shard, utcnow
from models.domain.status import CellStatus, JobStatus, ShardStatus, final_job_status

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class CellResult:
    index: int
    key: str
    sha256: str
    rating: str | None
    render_ms: int
    # The rendered picture, in memory, for listeners (thumbnails); never stored here.
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    held: bool = False  # screening held it: stored privately (models/infra/held_storage.py)


@dataclass(frozen=True)
class CellFailure:
    index: int
    error: str


@dataclass(frozen=True)
class ShardCompletion:
    recorded: int  # cells newly done; a re-render of a recorded cell counts nothing
    failed: int  # cells that used their last attempt
    requeued: bool  # some cells will be tried again (after a backoff)
    job_status: JobStatus | None  # the job's terminal status if this attempt ended it
    # Whether the job's follow-up (models/db/finish_follow_up.py) may have work: paused,
    # a GPU budget reached, progress webhooks. farm_finish_shard v3 says; else assumed.
    follow_up: bool = True


def finish_attempt(session: Session, **finish: Unpack[FinishArgs]) -> ShardCompletion:
    """Record one attempt at a shard: images that landed, cells that failed.

    A failed cell is tried again (the shard goes back to the queue after a
    backoff) until it has used ``max_attempts``; then it is failed for good
    with its error. The job's counters move by what is new, in this transaction.

    On Postgres one statement, ``farm_finish_shard()`` (models/db/sql/), runs the
    steps of ``finish_attempt_stepwise`` (SQLite's path) up to the job's counters.
    """
    if session.get_bind().dialect.name != "postgresql":
        return finish_attempt_stepwise(session, **finish)
    row = finish_row(session, **finish)
    shard = finish["shard"]
    final = settle_job(
        session,
        job_id=shard.job_id,
        status=row.job_status,
        total=row.job_total,
        done=row.job_done,
        failed=row.job_failed,
        cancelled=row.job_cancelled,
    )
    return ShardCompletion(row.recorded, row.failed, row.requeued, final)


def finish_attempt_stepwise(
    session: Session,
    *,
    shard: ClaimedShard,
    worker: str,
    results: list[CellResult],
    failures: list[CellFailure],
    max_attempts: int,
    backoff_s: float,
) -> ShardCompletion:
    """``finish_attempt`` as statements from Python."""
    share_job(session, shard.job_id)  # the counters' UPDATE, last, serialises finishers
    now = utcnow()
    recorded = _record_results(session, job_id=shard.job_id, results=results, now=now)
    render_ms = sum(r.render_ms for r in results)
    failed = 0
    last_error: str | None = None
    for f in failures:
        attempts = session.scalar(
            update(Item)
            .where(
                Item.job_id == shard.job_id,
                Item.index == f.index,
                Item.status == CellStatus.QUEUED,
            )
            .values(attempts=Item.attempts + 1, error=f.error)
            .returning(Item.attempts)
        )
        if attempts is not None and attempts >= max_attempts:
            failed += _rowcount(
                session.execute(
                    update(Item)
                    .where(
                        Item.job_id == shard.job_id,
                        Item.index == f.index,
                        Item.status == CellStatus.QUEUED,
                    )
                    .values(status=CellStatus.FAILED, finished_at=now)
                )
            )
            last_error = f.error
    still_queued = bool(
        session.scalar(
            select(func.count())
            .select_from(Item)
            .where(
                Item.job_id == shard.job_id,
                Item.shard_index == shard.index,
                Item.status == CellStatus.QUEUED,
            )
        )
    )
    mine = [Shard.id == shard.id, Shard.status == ShardStatus.RUNNING, Shard.claimed_by == worker]
    if still_queued:
        delay = timedelta(seconds=backoff_s * 2 ** max(0, shard.attempts - 1))
        session.execute(
            update(Shard)
            .where(*mine)
            .values(
                status=ShardStatus.QUEUED,
                claimed_by=None,
                lease_until=None,
                available_at=now + delay,
                updated_at=now,
            )
        )
    else:
        status = ShardStatus.FAILED if failed and not recorded else ShardStatus.DONE
        session.execute(
            update(Shard).where(*mine).values(status=status, lease_until=None, updated_at=now)
        )
    final = _bump_job(
        session,
        job_id=shard.job_id,
        done=recorded,
        failed=failed,
        render_ms=render_ms,
        error=last_error,
    )
    return ShardCompletion(recorded, failed, still_queued, final)


def _record_results(
    session: Session, *, job_id: uuid.UUID, results: list[CellResult], now: datetime
) -> int:
    """Mark the shard's landed cells done; returns how many were still queued. One
    UPDATE per cell: the stepwise path (SQLite; on Postgres ``farm_finish_shard()``
    records a shard in one statement)."""
    return sum(
        _rowcount(
            session.execute(
                update(Item)
                .where(
                    Item.job_id == job_id,
                    Item.index == r.index,
                    Item.status == CellStatus.QUEUED,
                )
                .values(
                    status=CellStatus.DONE,
                    key=r.key,
                    sha256=r.sha256,
                    rating=r.rating,
                    render_ms=r.render_ms,
                    attempts=Item.attempts + 1,
                    finished_at=now,
                    error=None,
                )
            )
        )
        for r in results
    )


def _rowcount(result: object) -> int:
    return int(result.rowcount)  # type: ignore[attr-defined]


def _bump_job(
    session: Session,
    *,
    job_id: uuid.UUID,
    done: int,
    failed: int,
    render_ms: int,
    error: str | None = None,
) -> JobStatus | None:
    """Add to the counters; returns the terminal status if this update finished the job."""
    values: dict[str, object] = {
        "done": Job.done + done,
        "failed": Job.failed + failed,
        "render_ms_total": Job.render_ms_total + render_ms,
        "version": Job.version + 1,
    }
    if error is not None:
        values["error"] = error
    counters = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(**values)
        .returning(Job.status, Job.total, Job.done, Job.failed, Job.cancelled)
    ).one()
    return settle_job(
        session,
        job_id=job_id,
        status=counters.status,
        total=counters.total,
        done=counters.done,
        failed=counters.failed,
        cancelled=counters.cancelled,
    )


def settle_job(
    session: Session,
    *,
    job_id: uuid.UUID,
    status: str,
    total: int,
    done: int,
    failed: int,
    cancelled: int,
) -> JobStatus | None:
    """Finish the job if every cell has its outcome: status, then the webhook."""
    if JobStatus(status) not in (JobStatus.QUEUED, JobStatus.RUNNING):
        return None
    final = final_job_status(total=total, done=done, failed=failed, cancelled=cancelled)
    if final is not None:
        now = utcnow()
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=final, finished_at=now, version=Job.version + 1)
        )
        set_expiry(session, job_id=job_id, finished_at=now)  # its retention starts now
        enqueue_job_completed(session, job_id=job_id)  # the webhook, in this transaction
    return final
