"""farm_claim_shard() and farm_finish_shard() (models/db/sql/) do what the stepwise
Python claim and finish do, on fixed scenarios whose outcome is pinned too
(test_claim_equivalence.py compares the two on generated ones)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import ClaimedShard, claim_next_shard, claim_next_shard_stepwise
from models.db.finish import (
    CellFailure,
    CellResult,
    ShardCompletion,
    finish_attempt,
    finish_attempt_stepwise,
)
from models.db.running_counts import count_at_each_statement
from models.db.tables import Item, Job, Shard, utcnow
from models.domain.status import JobStatus
from tests.unit.test_shard_store import make_job, new_model

Claim = Callable[..., ClaimedShard | None]


def _claim_order(
    sessions: sessionmaker[Session], model: str, claim: Claim
) -> list[tuple[int, int, str, int]]:
    """Claim until nothing is left, in one transaction that is then rolled back."""
    start = utcnow()
    order: list[tuple[int, int, str, int]] = []
    with sessions() as session:
        count_at_each_statement(session)  # the claims rank by this transaction's claims
        for i in range(200):
            now = start + timedelta(seconds=i)
            shard = claim(session, model=model, worker=f"w{i % 3}", lease_s=60, now=now)
            if shard is None:
                break
            job = session.get(Job, shard.job_id)
            assert job is not None
            session.refresh(job)
            order.append((shard.id, shard.attempts, job.status, job.version))
        session.rollback()
    return order


def test_the_function_and_the_stepwise_claim_agree(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    # Three tenants, several jobs each, two priorities, shards already rendering.
    shards: dict[tuple[str, int], list[int]] = {}
    for tenant, jobs in (("a", 3), ("b", 1), ("c", 2)):
        for j in range(jobs):
            _, shards[(tenant, j)] = make_job(
                sessions,
                model,
                tenant=f"claim-{model}-{tenant}",
                cells=3 + j,
                priority="high" if (tenant, j) == ("c", 1) else "normal",
            )
    with sessions.begin() as session:
        for shard_id in shards[("a", 0)][:2]:
            shard = session.get(Shard, shard_id)
            assert shard is not None
            shard.status = "running"
    stepwise = _claim_order(sessions, model, claim_next_shard_stepwise)
    in_postgres = _claim_order(sessions, model, claim_next_shard)
    assert in_postgres == stepwise
    # Not a trivial order: the high-priority job first, then the tenant with nothing
    # rendering (b; a has two shards rendering, c the four it just took).
    claimed = [shard_id for shard_id, *_ in stepwise]
    assert sorted(claimed) == sorted(
        i for ids in shards.values() for i in ids if i not in shards[("a", 0)][:2]
    )
    assert claimed[:4] == shards[("c", 1)]
    tenant_of = {i: tenant for (tenant, _), ids in shards.items() for i in ids}
    assert tenant_of[claimed[4]] == "b"


def test_an_empty_queue_claims_nothing(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        assert claim_next_shard(session, model=new_model(), worker="w", lease_s=60) is None


# -- farm_finish_shard() -------------------------------------------------------------


def _snapshot(sessions: sessionmaker[Session], job_id: uuid.UUID) -> dict[str, object]:
    """The job, its shards and cells, without ids and clock readings."""
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        items = list(
            session.scalars(select(Item).where(Item.job_id == job_id).order_by(Item.index))
        )
        shards = session.scalars(select(Shard).where(Shard.job_id == job_id).order_by(Shard.id))
        return {
            "job": (job.status, job.done, job.failed, job.render_ms_total, job.version, job.error),
            "finished": job.finished_at is not None,
            "items": [
                (i.status, i.key, i.sha256, i.rating, i.render_ms, i.attempts, i.error)
                for i in items
            ],
            "items_finished": [i.finished_at is not None for i in items],
            "shards": [
                (s.status, s.claimed_by, s.lease_until is None, s.available_at is not None)
                for s in shards
            ],
        }


def _play(
    sessions: sessionmaker[Session], finish: Callable[..., ShardCompletion]
) -> tuple[list[ShardCompletion], dict[str, object]]:
    """One scenario: landed cells, a retried failure, a final failure, a re-record."""
    model = new_model()
    job_id, _ = make_job(sessions, model, cells=3)  # three shards of one cell

    def attempt(results: list[int], failures: list[int]) -> ShardCompletion:
        with sessions.begin() as session:
            shard = claim_next_shard_stepwise(
                session, model=model, worker="w", lease_s=60, now=utcnow()
            )
            assert shard is not None
            return finish(
                session,
                shard=shard,
                worker="w",
                results=[CellResult(i, f"k/{i}", f"{i:064d}", "general", 100 + i) for i in results],
                failures=[CellFailure(i, f"boom {i}") for i in failures],
                max_attempts=2,
                backoff_s=0.0,
            )

    completions = [
        attempt([0], []),  # cell 0 lands
        attempt([], [1]),  # cell 1 fails once: requeued
        attempt([], [1]),  # and again: failed for good
        attempt([2], []),  # the last cell finishes the job: partial
    ]
    return completions, _snapshot(sessions, job_id)


def test_the_finish_function_and_the_stepwise_finish_agree(
    sessions: sessionmaker[Session],
) -> None:
    stepwise = _play(sessions, finish_attempt_stepwise)
    in_postgres = _play(sessions, finish_attempt)
    assert in_postgres == stepwise
    completions, state = in_postgres
    assert [(c.recorded, c.failed, c.requeued) for c in completions] == [
        (1, 0, False),
        (0, 0, True),
        (0, 1, False),
        (1, 0, False),
    ]
    assert [c.job_status for c in completions] == [None, None, None, JobStatus.PARTIAL]
    assert state["job"][:4] == ("partial", 2, 1, 202)  # type: ignore[index]
    assert [s[0] for s in state["shards"]] == ["done", "failed", "done"]  # type: ignore[attr-defined]
