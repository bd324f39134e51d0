"""Claiming and finishing shards: the worker side of the data layer.

Every transition is a conditional UPDATE, so a duplicate message, a second
worker or a late worker changes nothing that another already did.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import case, func, select, text, update
from sqlalchemy.orm import Session

from models.db.fair_share import next_shard_id
from models.db.outbox import enqueue_job_completed
from models.db.tables import Item, Job, Shard, Tenant, utcnow
from models.domain.status import CellStatus, JobStatus, ShardStatus, final_job_status

if TYPE_CHECKING:
    from PIL import Image

CLAIM_TRIES = 3  # another worker may take the chosen shard between choice and claim


@dataclass(frozen=True)
class ClaimedShard:
    id: int
    job_id: uuid.UUID
    tenant_id: uuid.UUID
    index: int
    model: str
    attempts: int


@dataclass(frozen=True)
class CellResult:
    index: int
    key: str
    sha256: str
    rating: str | None
    render_ms: int
    # The rendered picture, in memory, for listeners (thumbnails); never stored here.
    image: Image.Image | None = field(default=None, compare=False, repr=False)


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


_CLAIM_SQL = text(
    "SELECT id, job_id, tenant_id, index, model, attempts"
    " FROM farm_claim_shard(:model, :worker, :lease_s, :now)"
)


def claim_next_shard(
    session: Session, *, model: str, worker: str, lease_s: int, now: datetime | None = None
) -> ClaimedShard | None:
    """Take the shard fair share says is next for ``model``: queued -> running, leased.

    On Postgres one round trip: ``farm_claim_shard()`` (migration 0007) runs the same
    steps as ``claim_next_shard_stepwise``, which SQLite uses.
    """
    now = now or utcnow()
    if session.get_bind().dialect.name != "postgresql":
        return claim_next_shard_stepwise(
            session, model=model, worker=worker, lease_s=lease_s, now=now
        )
    params = {"model": model, "worker": worker, "lease_s": lease_s, "now": now}
    row = session.execute(_CLAIM_SQL, params).one_or_none()
    return None if row is None else ClaimedShard(*row)


def claim_next_shard_stepwise(
    session: Session, *, model: str, worker: str, lease_s: int, now: datetime
) -> ClaimedShard | None:
    """The claim as statements from Python: fair share's choice, then ``_claim``."""
    for _ in range(CLAIM_TRIES):
        shard_id = next_shard_id(session, model=model, now=now)
        if shard_id is None:
            return None
        claimed = _claim(session, shard_id=shard_id, worker=worker, lease_s=lease_s, now=now)
        if claimed is not None:
            return claimed
    return None


def lock_job(session: Session, job_id: uuid.UUID) -> None:
    """Every writer locks the job row first, then shards, then cells: no deadlocks."""
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update())


def _claim(
    session: Session, *, shard_id: int, worker: str, lease_s: int, now: datetime
) -> ClaimedShard | None:
    job_id = session.scalar(select(Shard.job_id).where(Shard.id == shard_id))
    if job_id is None:
        return None
    lock_job(session, job_id)
    row = session.execute(
        update(Shard)
        .where(Shard.id == shard_id, Shard.status == ShardStatus.QUEUED)
        .values(
            status=ShardStatus.RUNNING,
            claimed_by=worker,
            lease_until=now + timedelta(seconds=lease_s),
            attempts=Shard.attempts + 1,
            updated_at=now,
        )
        .returning(
            Shard.id, Shard.job_id, Shard.tenant_id, Shard.index, Shard.model, Shard.attempts
        )
    ).one_or_none()
    if row is None:
        return None
    shard = ClaimedShard(*row)
    session.execute(update(Tenant).where(Tenant.id == shard.tenant_id).values(last_claim_at=now))
    # One statement: the first claim of a job also starts it (queued -> running).
    starting = Job.status == JobStatus.QUEUED
    session.execute(
        update(Job)
        .where(Job.id == shard.job_id)
        .values(
            last_claim_at=now,
            version=Job.version + 1,
            status=case((starting, JobStatus.RUNNING.value), else_=Job.status),
            started_at=case((starting, now), else_=Job.started_at),
        )
    )
    return shard


@dataclass(frozen=True, slots=True)
class QueuedCell:
    """What rendering a cell needs, read without the ORM (a worker reads a shard's
    cells between two renders: loading full ``Item`` objects cost ~5% of its CPU)."""

    index: int
    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    steps: int
    guidance_scale: float
    sampler: str
    emphasis: str | None
    hires_scale: float | None
    hires_strength: float | None
    hires_steps: int | None


_CELL_COLUMNS = (
    Item.index,
    Item.prompt,
    Item.negative_prompt,
    Item.width,
    Item.height,
    Item.seed,
    Item.steps,
    Item.guidance_scale,
    Item.sampler,
    Item.emphasis,
    Item.hires_scale,
    Item.hires_strength,
    Item.hires_steps,
)


def shard_cells(session: Session, *, shard: ClaimedShard) -> list[QueuedCell]:
    """The shard's cells that still need an image, in index order."""
    rows = session.execute(
        select(*_CELL_COLUMNS)
        .where(
            Item.job_id == shard.job_id,
            Item.shard_index == shard.index,
            Item.status == CellStatus.QUEUED,
        )
        .order_by(Item.index)
    )
    return [QueuedCell(**row._mapping) for row in rows]


def renew_leases(session: Session, *, shard_ids: list[int], worker: str, lease_s: int) -> None:
    """Heartbeat: the shards this worker still holds stay its own."""
    if shard_ids:
        session.execute(
            update(Shard)
            .where(
                Shard.id.in_(shard_ids),
                Shard.claimed_by == worker,
                Shard.status == ShardStatus.RUNNING,
            )
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        )


def cancelled_jobs(session: Session, *, job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    if not job_ids:
        return set()
    rows = session.scalars(
        select(Job.id).where(Job.id.in_(job_ids), Job.status == JobStatus.CANCELLED)
    )
    return set(rows)


_FINISH_SQL = text(
    "SELECT recorded, failed, requeued, job_status, job_total, job_done, job_failed,"
    " job_cancelled FROM farm_finish_shard(:shard, :job, :shard_index, :attempts, :worker,"
    " CAST(:indexes AS integer[]), CAST(:keys AS text[]), CAST(:digests AS text[]),"
    " CAST(:ratings AS text[]), CAST(:render_ms AS integer[]),"
    " CAST(:failed_indexes AS integer[]), CAST(:failed_errors AS text[]),"
    " :max_attempts, :backoff_s, :now)"
)


def finish_attempt(
    session: Session,
    *,
    shard: ClaimedShard,
    worker: str,
    results: list[CellResult],
    failures: list[CellFailure],
    max_attempts: int,
    backoff_s: float,
) -> ShardCompletion:
    """Record one attempt at a shard: images that landed, cells that failed.

    A failed cell is tried again (the shard goes back to the queue after a
    backoff) until it has used ``max_attempts``; then it is failed for good
    with its error. The job's counters move by what is new, in this transaction.

    On Postgres one statement, ``farm_finish_shard()`` (migration 0007), runs the
    steps of ``finish_attempt_stepwise`` (SQLite's path) up to the job's counters.
    """
    if session.get_bind().dialect.name != "postgresql":
        return finish_attempt_stepwise(
            session,
            shard=shard,
            worker=worker,
            results=results,
            failures=failures,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
        )
    params = {
        "shard": shard.id,
        "job": shard.job_id,
        "shard_index": shard.index,
        "attempts": shard.attempts,
        "worker": worker,
        "indexes": [r.index for r in results],
        "keys": [r.key for r in results],
        "digests": [r.sha256 for r in results],
        "ratings": [r.rating for r in results],
        "render_ms": [r.render_ms for r in results],
        "failed_indexes": [f.index for f in failures],
        "failed_errors": [f.error for f in failures],
        "max_attempts": max_attempts,
        "backoff_s": backoff_s,
        "now": utcnow(),
    }
    row = session.execute(_FINISH_SQL, params).one()
    final = _settle_job(
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
    lock_job(session, shard.job_id)
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
    return _settle_job(
        session,
        job_id=job_id,
        status=counters.status,
        total=counters.total,
        done=counters.done,
        failed=counters.failed,
        cancelled=counters.cancelled,
    )


def _settle_job(
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
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=final, finished_at=utcnow(), version=Job.version + 1)
        )
        enqueue_job_completed(session, job_id=job_id)  # the webhook, in this transaction
    return final
