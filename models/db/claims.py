"""Claiming a shard: queued -> running, leased to one worker.

Which shard is next is fair share's choice (``models.db.fair_share``); the claim is a
conditional UPDATE, so a duplicate message or a second worker changes nothing that
another already did. On Postgres both run inside ``farm_claim_shard()``
(``models/db/sql/farm_claim_shard/``), one round trip while the GPU waits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict, Unpack

from sqlalchemy import case, select, text, update
from sqlalchemy.orm import Session

from models.db.fair_share import next_shard
from models.db.tables import Job, Shard, Tenant, utcnow
from models.domain.status import JobStatus, ShardStatus

CLAIM_TRIES = 3  # another worker may take the chosen shard between choice and claim


@dataclass(frozen=True)
class ClaimedShard:
    id: int
    job_id: uuid.UUID
    tenant_id: uuid.UUID
    index: int
    model: str
    attempts: int
    passed_over: bool = False  # LoRA affinity took another job than fair share's first


# The claim commits without waiting for its WAL flush (set_config(..., true): this
# transaction only; a claim is a statement transaction, statement_transactions): a
# synchronous commit holds the job row's hint lock through the flush, and the job's
# finishers queued behind it (bench/fleet.py). A claim lost whole to a Postgres crash
# leaves its shard queued: it may be rendered twice, its cells are recorded once.
CLAIM_SQL = text(
    "SELECT id, job_id, tenant_id, index, model, attempts, passed_over,"
    " set_config('synchronous_commit', 'off', true) AS async"
    " FROM farm_claim_shard(:model, :worker, :lease_s, :now, :adapters, :lookahead)"
)


class ClaimArgs(TypedDict):
    """What a claim asks for. ``adapters``: the LoRA set the worker has active,
    preferred within ``lookahead`` (models/db/fair_share.py)."""

    model: str
    worker: str
    lease_s: int
    now: NotRequired[datetime | None]
    adapters: NotRequired[str | None]
    lookahead: NotRequired[int]


def claim_params(claim: ClaimArgs) -> dict[str, Any]:
    """The claim's arguments by name, defaults filled (``farm_claim_shard()``'s and the
    stepwise claim's; ``farm_claim_cells()`` takes the same)."""
    return {
        "model": claim["model"],
        "worker": claim["worker"],
        "lease_s": claim["lease_s"],
        "now": claim.get("now") or utcnow(),
        "adapters": claim.get("adapters"),
        "lookahead": claim.get("lookahead", 0),
    }


def claim_next_shard(session: Session, **claim: Unpack[ClaimArgs]) -> ClaimedShard | None:
    """Take the shard fair share says is next for ``model``: queued -> running, leased.

    On Postgres one round trip: ``farm_claim_shard()`` (models/db/sql/) runs the same
    steps as ``claim_next_shard_stepwise``, which SQLite uses. It ranks by the running
    counts committed when its statement starts: claim in a statement transaction
    (``statement_transactions``), one shard each, as the worker does, or see
    ``models.db.running_counts.count_at_each_statement``. A worker claims with
    ``models.db.claim_cells.claim_with_cells``: the same claim, with the shard's cells.
    """
    params = claim_params(claim)
    if session.get_bind().dialect.name != "postgresql":
        return claim_next_shard_stepwise(session, **params)
    row = session.execute(CLAIM_SQL, params).one_or_none()
    return None if row is None else ClaimedShard(*row[:-1])


def claim_next_shard_stepwise(
    session: Session,
    *,
    model: str,
    worker: str,
    lease_s: int,
    now: datetime,
    adapters: str | None = None,
    lookahead: int = 0,
) -> ClaimedShard | None:
    """The claim as statements from Python: fair share's choice, then ``_claim``."""
    for _ in range(CLAIM_TRIES):
        found = next_shard(session, model=model, now=now, adapters=adapters, lookahead=lookahead)
        if found is None:
            return None
        shard_id, passed_over = found
        claimed = _claim(session, shard_id=shard_id, worker=worker, lease_s=lease_s, now=now)
        if claimed is not None:
            return replace(claimed, passed_over=passed_over)
    return None


def lock_job(session: Session, job_id: uuid.UUID) -> None:
    """Every writer locks the job row first, then shards, then cells: no deadlocks."""
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update())


def share_job(session: Session, job_id: uuid.UUID) -> None:
    """The finishers' lock on the job row (farm_finish_shard v2): they share it, and it
    excludes every writer that takes ``lock_job``; the order stays job, shards, cells."""
    session.execute(
        select(Job.id).where(Job.id == job_id).with_for_update(read=True, key_share=True)
    )


def _claim(
    session: Session, *, shard_id: int, worker: str, lease_s: int, now: datetime
) -> ClaimedShard | None:
    job_id = session.scalar(select(Shard.job_id).where(Shard.id == shard_id))
    if job_id is None:
        return None
    # Only a job's first claim locks its row (farm_claim_shard v3): later claims write
    # the fair-share hints below without waiting, which one at a time is the same.
    if session.scalar(select(Job.status).where(Job.id == job_id)) == JobStatus.QUEUED:
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
