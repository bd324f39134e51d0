"""farm_claim_shard() / farm_finish_shard() and their stepwise Python twins (SQLite's path)
make the same choices and the same writes, on generated backlogs in real Postgres.

Each example writes its backlog once, plays it through one path inside a savepoint,
rolls the savepoint back and plays it through the other: both start from the same
rows, ids included. Examples are derandomized: CI runs the same ones every time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, case, select
from sqlalchemy.orm import Session

from models.db.claims import ClaimedShard, claim_next_shard, claim_next_shard_stepwise
from models.db.finish import (
    CellFailure,
    CellResult,
    ShardCompletion,
    finish_attempt,
    finish_attempt_stepwise,
)
from models.db.running_counts import count_at_each_statement
from models.db.session import make_engine
from models.db.tables import Item, Job, Shard, Tenant
from models.db.webhook_tables import WebhookDelivery
from models.domain.status import ShardStatus
from models.infra.settings import normalize_database_url
from tests.backlogs import ADAPTERS, BASE, MODEL, Backlog, backlogs, build

EXAMPLES = settings(
    max_examples=100,
    derandomize=True,  # the same examples on every run: CI never flakes on a new one
    database=None,
    deadline=None,  # Postgres on a loaded 2-core machine: no per-example time limit
    suppress_health_check=[HealthCheck.too_slow],
)
CLAIM_STEPS = 20  # two seconds apart: the drawn backoffs (up to 30 s) expire meanwhile

Claim = Callable[..., ClaimedShard | None]
Finish = Callable[..., ShardCompletion]


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(normalize_database_url(pg_url))
    yield engine
    engine.dispose()


def _both_ways(
    engine: Engine, backlog: Backlog, play: Callable[[Session, list[uuid.UUID], bool], Any]
) -> tuple[Any, Any]:
    """``play`` stepwise, then in Postgres, on the same rows; nothing is committed."""
    with Session(engine) as session:
        count_at_each_statement(session)  # both paths rank by this transaction's claims
        job_ids = build(session, backlog)
        outcomes = []
        for in_postgres in (False, True):
            savepoint = session.begin_nested()
            outcomes.append(play(session, job_ids, in_postgres))
            savepoint.rollback()
        session.rollback()
    return outcomes[0], outcomes[1]


# -- the claim ----------------------------------------------------------------------


def _claim_state(session: Session, job_ids: list[uuid.UUID]) -> list[Any]:
    """What the claims wrote: every timestamp here is a claim's ``now``."""
    of_jobs = Job.id.in_(job_ids)
    queries = (
        select(
            Shard.id,
            Shard.status,
            Shard.claimed_by,
            Shard.lease_until,
            Shard.attempts,
            Shard.updated_at,
        )
        .where(Shard.job_id.in_(job_ids))
        .order_by(Shard.id),
        select(Job.id, Job.status, Job.version, Job.started_at, Job.last_claim_at)
        .where(of_jobs)
        .order_by(Job.id),
        select(Tenant.id, Tenant.last_claim_at)
        .where(Tenant.id.in_(select(Job.tenant_id).where(of_jobs)))
        .order_by(Tenant.id),
    )
    return [session.execute(query).all() for query in queries]


@dataclass(frozen=True)
class Affinity:
    """What each claim's worker has active (None: no preference), and how far it looks."""

    active: tuple[str | None, ...]
    lookahead: int


NO_AFFINITY = Affinity((None,) * CLAIM_STEPS, 0)
_affinities = st.builds(
    Affinity,
    active=st.lists(
        st.sampled_from([None, *ADAPTERS]), min_size=CLAIM_STEPS, max_size=CLAIM_STEPS
    ).map(tuple),
    lookahead=st.integers(min_value=0, max_value=3),
)


def _play_claims(affinity: Affinity) -> Callable[[Session, list[uuid.UUID], bool], list[Any]]:
    def play(session: Session, job_ids: list[uuid.UUID], in_postgres: bool) -> list[Any]:
        claim: Claim = claim_next_shard if in_postgres else claim_next_shard_stepwise
        taken = [
            claim(
                session,
                model=MODEL,
                worker=f"w{step % 3}",
                lease_s=60,
                now=BASE + timedelta(seconds=2 * step),
                adapters=affinity.active[step],
                lookahead=affinity.lookahead,
            )
            for step in range(CLAIM_STEPS)
        ]
        return [taken, _claim_state(session, job_ids)]

    return play


@EXAMPLES
@given(backlog=backlogs())
def test_the_claims_pick_the_same_shards_in_the_same_order(
    engine: Engine, backlog: Backlog
) -> None:
    stepwise, in_postgres = _both_ways(engine, backlog, _play_claims(NO_AFFINITY))
    assert in_postgres == stepwise


@EXAMPLES
@given(backlog=backlogs(), affinity=_affinities)
def test_with_lora_affinity_the_claims_pick_the_same_shards_in_the_same_order(
    engine: Engine, backlog: Backlog, affinity: Affinity
) -> None:
    """v2's look-ahead (a worker's active LoRA set, ``lookahead`` jobs and shards deep)."""
    stepwise, in_postgres = _both_ways(engine, backlog, _play_claims(affinity))
    assert in_postgres == stepwise


# -- the finish ---------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One attempt at the next shard, and how it went."""

    outcomes: tuple[str, ...]  # per cell of the shard: "land", "fail" or "skip"
    stray: int | None  # a cell of the job outside the shard landing too (a stray result)
    late: bool  # reported by a worker that no longer holds the shard
    max_attempts: int
    backoff_s: float


_attempts = st.lists(
    st.builds(
        Attempt,
        outcomes=st.lists(
            st.sampled_from(["land", "land", "fail", "skip"]), min_size=3, max_size=3
        ).map(tuple),
        stray=st.none() | st.integers(min_value=0, max_value=11),
        late=st.integers(0, 7).map(lambda n: n == 0),
        max_attempts=st.integers(min_value=1, max_value=3),
        # Multiples of 1/4 s: Python's timedelta and Postgres' interval both hold them exactly.
        backoff_s=st.integers(min_value=0, max_value=12).map(lambda n: n / 4),
    ),
    min_size=1,
    max_size=8,
)


def _finish_state(session: Session, job_ids: list[uuid.UUID]) -> list[Any]:
    """What the finishes wrote, without wall-clock readings: ``finish_attempt`` reads
    the clock itself, so a backoff is compared as ``available_at - updated_at``."""
    # A queued shard's last write was the finish that requeued it (or none).
    backoff = case((Shard.status == ShardStatus.QUEUED, Shard.available_at - Shard.updated_at))
    queries = (
        select(
            Job.id,
            Job.status,
            Job.done,
            Job.failed,
            Job.render_ms_total,
            Job.version,
            Job.error,
            Job.finished_at.is_(None),
        )
        .where(Job.id.in_(job_ids))
        .order_by(Job.id),
        select(
            Item.job_id,
            Item.index,
            Item.status,
            Item.key,
            Item.sha256,
            Item.rating,
            Item.render_ms,
            Item.attempts,
            Item.error,
            Item.finished_at.is_(None),
        )
        .where(Item.job_id.in_(job_ids))
        .order_by(Item.job_id, Item.index),
        select(
            Shard.id,
            Shard.status,
            Shard.claimed_by,
            Shard.lease_until,
            Shard.attempts,
            Shard.available_at.is_(None),
            backoff,
        )
        .where(Shard.job_id.in_(job_ids))
        .order_by(Shard.id),
        select(WebhookDelivery.job_id, WebhookDelivery.event, WebhookDelivery.url)
        .where(WebhookDelivery.job_id.in_(job_ids))
        .order_by(WebhookDelivery.job_id),
    )
    return [session.execute(query).all() for query in queries]


def _attempt(session: Session, step: int, attempt: Attempt, finish: Finish) -> list[Any]:
    # The same claim on both sides, far after every backoff: the finish is under test.
    now = BASE + timedelta(days=365 * 10, seconds=step)
    shard = claim_next_shard_stepwise(session, model=MODEL, worker="w", lease_s=60, now=now)
    if shard is None:
        return [None]
    cells = session.scalars(
        select(Item.index)
        .where(Item.job_id == shard.job_id, Item.shard_index == shard.index)
        .order_by(Item.index)
    ).all()
    chosen = dict(zip(cells, attempt.outcomes, strict=False))
    total = session.scalar(select(Job.total).where(Job.id == shard.job_id))
    if attempt.stray is not None and total and attempt.stray % total not in chosen:
        chosen[attempt.stray % total] = "land"
    results = [
        CellResult(i, f"k/{i}/{step}", f"{i:064d}", ("general", None)[i % 2], 100 * step + i)
        for i, outcome in chosen.items()
        if outcome == "land"
    ]
    failures = [CellFailure(i, f"boom {i} at {step}") for i, o in chosen.items() if o == "fail"]
    completion = finish(
        session,
        shard=shard,
        worker="late" if attempt.late else "w",
        results=results,
        failures=failures,
        max_attempts=attempt.max_attempts,
        backoff_s=attempt.backoff_s,
    )
    return [shard, completion]


@settings(EXAMPLES, max_examples=50)  # each example is more statements: fewer of them
@given(backlog=backlogs(finishing=True), attempts=_attempts)
def test_the_finishes_record_the_same_outcomes(
    engine: Engine, backlog: Backlog, attempts: list[Attempt]
) -> None:
    def play(session: Session, job_ids: list[uuid.UUID], in_postgres: bool) -> list[Any]:
        finish: Finish = finish_attempt if in_postgres else finish_attempt_stepwise
        return [
            [*_attempt(session, step, attempt, finish), _finish_state(session, job_ids)]
            for step, attempt in enumerate(attempts)
        ]

    stepwise, in_postgres = _both_ways(engine, backlog, play)
    assert in_postgres == stepwise
