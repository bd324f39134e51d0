"""Claims and attempts are conditional: duplicates and late workers change nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.cell_rows import queued_cells
from models.db.claims import ClaimedShard, claim_next_shard
from models.db.finish import CellFailure, CellResult, finish_attempt
from models.db.jobs import NewJob, create_jobs, get_job
from models.db.keys import ensure_tenant
from models.db.tables import Item, Job, utcnow
from models.domain.spec import JobSpec


def new_model() -> str:
    """Each test queues work for a model of its own: claims only see that model."""
    return f"m-{uuid.uuid4().hex[:8]}"


def make_job(
    sessions: sessionmaker[Session],
    model: str,
    *,
    tenant: str | None = None,
    cells: int = 2,
    priority: str = "normal",
) -> tuple[uuid.UUID, list[int]]:
    spec = JobSpec.model_validate(
        {"prompts": ["a"], "seeds": list(range(cells)), "priority": priority}
    )
    with sessions.begin() as session:
        owner = ensure_tenant(session, name=tenant or f"store-{uuid.uuid4().hex[:8]}")
        [created] = create_jobs(
            session,
            tenant_id=owner.id,
            requests=[NewJob(spec)],
            default_model=model,
            batch_size=1 if cells > 2 else 4,
        )
        return created.job.id, created.shard_ids


def reload(sessions: sessionmaker[Session], job_id: uuid.UUID) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def claim(sessions: sessionmaker[Session], model: str, worker: str = "w1") -> ClaimedShard | None:
    with sessions.begin() as session:
        return claim_next_shard(session, model=model, worker=worker, lease_s=60)


def results_for(sessions: sessionmaker[Session], shard: ClaimedShard) -> list[CellResult]:
    with sessions() as session:
        cells = queued_cells(session, job_id=shard.job_id, shard_index=shard.index)
    return [CellResult(c.index, f"k/{c.index}", "0" * 64, None, 10) for c in cells]


def attempt(
    sessions: sessionmaker[Session],
    shard: ClaimedShard,
    *,
    results: list[CellResult],
    failures: list[CellFailure] | None = None,
    worker: str = "w1",
) -> tuple[int, int, bool]:
    with sessions.begin() as session:
        c = finish_attempt(
            session,
            shard=shard,
            worker=worker,
            results=results,
            failures=failures or [],
            max_attempts=2,
            backoff_s=0,
        )
    return c.recorded, c.failed, c.requeued


def test_a_shard_is_claimed_once(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    job_id, [_] = make_job(sessions, model)
    first = claim(sessions, model)
    assert first is not None
    assert first.attempts == 1
    assert claim(sessions, model, "w2") is None
    assert reload(sessions, job_id).status == "running"


def test_an_attempt_counts_each_cell_once(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    job_id, _ = make_job(sessions, model)
    shard = claim(sessions, model)
    assert shard is not None
    results = results_for(sessions, shard)
    assert attempt(sessions, shard, results=results) == (2, 0, False)
    assert attempt(sessions, shard, results=results) == (0, 0, False)  # a late duplicate
    job = reload(sessions, job_id)
    assert (job.done, job.status) == (2, "succeeded")
    assert job.finished_at is not None


def test_a_failing_cell_is_retried_then_failed_and_the_job_is_partial(
    sessions: sessionmaker[Session],
) -> None:
    model = new_model()
    job_id, _ = make_job(sessions, model)
    shard = claim(sessions, model)
    assert shard is not None
    good, bad = results_for(sessions, shard)
    assert attempt(sessions, shard, results=[good], failures=[CellFailure(bad.index, "boom")]) == (
        1,
        0,
        True,
    )
    again = claim(sessions, model, "w2")
    assert again is not None
    assert again.attempts == 2
    assert attempt(
        sessions, again, results=[], failures=[CellFailure(bad.index, "boom 2")], worker="w2"
    ) == (0, 1, False)
    job = reload(sessions, job_id)
    assert (job.done, job.failed, job.status, job.error) == (1, 1, "partial", "boom 2")
    with sessions() as session:
        errors = dict(
            session.execute(select(Item.index, Item.error).where(Item.job_id == job_id)).all()
        )
    assert errors == {good.index: None, bad.index: "boom 2"}


def test_backoff_hides_a_requeued_shard_until_it_is_due(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    make_job(sessions, model)
    shard = claim(sessions, model)
    assert shard is not None
    [cell, _] = results_for(sessions, shard)
    with sessions.begin() as session:
        finish_attempt(
            session,
            shard=shard,
            worker="w1",
            results=[],
            failures=[CellFailure(cell.index, "x")],
            max_attempts=3,
            backoff_s=30,
        )
    assert claim(sessions, model) is None
    with sessions.begin() as session:
        later = claim_next_shard(
            session, model=model, worker="w1", lease_s=60, now=utcnow() + timedelta(seconds=31)
        )
    assert later is not None


def test_priority_goes_first(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    make_job(sessions, model, cells=6, priority="bulk")
    make_job(sessions, model, cells=1, priority="normal")
    _, [high_shard] = make_job(sessions, model, cells=1, priority="high")
    first = claim(sessions, model)
    assert first is not None
    assert first.id == high_shard


def test_tenants_take_turns(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    big, _ = make_job(sessions, model, tenant=f"big-{uuid.uuid4().hex[:6]}", cells=6)
    small, _ = make_job(sessions, model, tenant=f"small-{uuid.uuid4().hex[:6]}", cells=3)
    order = []
    for _ in range(6):
        shard = claim(sessions, model)
        assert shard is not None
        order.append(shard.job_id)
    assert order == [big, small, big, small, big, small]


def test_jobs_of_one_tenant_take_turns(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    big, _ = make_job(sessions, model, tenant=tenant, cells=8)
    small, _ = make_job(sessions, model, tenant=tenant, cells=3)
    order = []
    for _ in range(4):
        shard = claim(sessions, model)
        assert shard is not None
        order.append(shard.job_id)
        # finish each one: running counts are equal, so recency decides
        attempt(sessions, shard, results=results_for(sessions, shard))
    assert order == [big, small, big, small]


def test_tenant_scoping_of_get_job(sessions: sessionmaker[Session]) -> None:
    job_id, _ = make_job(sessions, new_model())
    with sessions() as session:
        assert get_job(session, tenant_id=uuid.uuid4(), job_id=job_id) is None
