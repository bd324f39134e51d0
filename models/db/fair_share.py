"""Which queued shard a free worker takes next.

Redis only says "there is work for model M"; the order is decided here, in
Postgres, so that it is right no matter how messages were queued, lost or
duplicated:

1. the best priority present (high, then normal, then bulk);
2. among tenants with work at that priority, the one with the fewest shards
   rendering now, then the one served least recently (round robin), then the
   oldest;
3. within that tenant, the job with the fewest shards rendering, then the one
   served least recently, then the oldest — so a 4-cell job is not stuck
   behind a 50,000-cell one;
4. that job's lowest shard id.

LoRA affinity (``adapters``: the set the worker has active) changes steps 3 and 4 only:
among the tenant's first ``lookahead`` jobs in that order, and the first ``lookahead``
queued shards of each, the first shard of the worker's set is taken, else step 4's.
Priority and tenant are never traded for it; the worker bounds how many claims in a row
may pass over fair share's job (worker/shard_runner.py).

Every step is an index walk on ``ix_shards_claim`` (a loose index scan for
the distinct tenants and jobs), so the cost does not grow with the backlog. Here the
shards rendering now are counted (``_running``); Postgres' ``farm_claim_shard()`` reads
the same counts from ``tenant_running`` / ``job_running``, which triggers on ``shards``
keep (migration 0017): counting a thousand running shards per claim was most of a
claim's cost with a thousand workers (bench/fleet.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from models.db.tables import Job, Shard, Tenant
from models.domain.status import ShardStatus

MAX_CANDIDATES = 100  # tenants (or jobs of one tenant) compared per claim
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _available(model: str, now: datetime) -> list[ColumnElement[bool]]:
    return [
        Shard.model == model,
        Shard.status == ShardStatus.QUEUED,
        or_(Shard.available_at.is_(None), Shard.available_at <= now),
    ]


def _distinct(
    session: Session, column: Any, filters: Sequence[ColumnElement[bool]]
) -> list[uuid.UUID]:
    """Distinct values of ``column`` among matching shards, by repeated index seeks."""
    values: list[uuid.UUID] = []
    last: uuid.UUID | None = None
    while len(values) < MAX_CANDIDATES:
        query = select(column).where(*filters)
        if last is not None:
            query = query.where(column > last)
        last = session.scalar(query.order_by(column).limit(1))
        if last is None:
            break
        values.append(last)
    return values


def _running(session: Session, model: str, column: Any, ids: list[uuid.UUID]) -> dict[Any, int]:
    rows = session.execute(
        select(column, func.count())
        .where(Shard.model == model, Shard.status == ShardStatus.RUNNING, column.in_(ids))
        .group_by(column)
    )
    return dict(rows.all())


def _ranked(
    session: Session, model: str, ids: list[uuid.UUID], shard_column: Any, table: Any
) -> list[uuid.UUID]:
    running = _running(session, model, shard_column, ids)
    served = {
        row.id: (row.last_claim_at or _EPOCH, row.created_at)
        for row in session.execute(
            select(table.id, table.last_claim_at, table.created_at).where(table.id.in_(ids))
        )
    }
    # Fewest rendering now, then least recently served, then oldest (a stable sort keeps
    # the candidates' order for ties, as the SQL's ordinality does).
    return sorted(ids, key=lambda i: (running.get(i, 0), *served[i]))


def _least_served(
    session: Session, model: str, ids: list[uuid.UUID], shard_column: Any, table: Any
) -> uuid.UUID:
    return _ranked(session, model, ids, shard_column, table)[0]


def next_shard_id(session: Session, *, model: str, now: datetime) -> int | None:
    """The shard a worker for ``model`` should take now (the caller claims it)."""
    found = next_shard(session, model=model, now=now)
    return None if found is None else found[0]


def next_shard(
    session: Session,
    *,
    model: str,
    now: datetime,
    adapters: str | None = None,
    lookahead: int = 0,
) -> tuple[int, bool] | None:
    """The shard a worker for ``model`` with ``adapters`` active should take now, and
    whether it passed over fair share's job for it (the caller claims it)."""
    available = _available(model, now)
    priority = session.scalar(select(func.min(Shard.priority_rank)).where(*available))
    if priority is None:
        return None
    at_priority = [*available, Shard.priority_rank == priority]
    tenants = _distinct(session, Shard.tenant_id, at_priority)
    if not tenants:
        return None
    # One candidate (the common case) needs no comparison: two queries saved per claim.
    tenant = (
        tenants[0]
        if len(tenants) == 1
        else _least_served(session, model, tenants, Shard.tenant_id, Tenant)
    )
    of_tenant = [*at_priority, Shard.tenant_id == tenant]
    jobs = _distinct(session, Shard.job_id, of_tenant)
    if not jobs:
        return None
    ranked = jobs if len(jobs) == 1 else _ranked(session, model, jobs, Shard.job_id, Job)
    # No row lock here: the claim locks the job row first (the lock order every
    # writer follows: job, then shards, then cells), then re-checks the shard.
    if adapters is not None and lookahead > 0:
        for job in ranked[:lookahead]:
            window = session.execute(
                select(Shard.id, Shard.adapters)
                .where(*of_tenant, Shard.job_id == job)
                .order_by(Shard.id)
                .limit(lookahead)
            ).all()
            match = next((row.id for row in window if row.adapters == adapters), None)
            if match is not None:
                return match, job != ranked[0]
    query = select(Shard.id).where(*of_tenant, Shard.job_id == ranked[0])
    shard = session.scalar(query.order_by(Shard.id).limit(1))
    return None if shard is None else (shard, False)
