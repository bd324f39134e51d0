"""tenant_running and job_running (migration 0017) hold the count of running shards per
(model, tenant) and per (model, tenant, job) at every commit, however a shard starts or
stops running: a claim, a finish, a failed cell sent back, a lapsed lease, a cancel, a
deleted job, rows written as running, and many workers claiming and finishing one job at
once. farm_claim_shard v5 ranks tenants and jobs by them: a count that drifted would
bend fair share."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import ClaimedShard, claim_next_shard
from models.db.finish import CellFailure
from models.db.finish_committed import finish_committed
from models.db.job_states import cancel_job
from models.db.reconcile import release_expired_leases
from models.db.retention import delete_job_rows
from models.db.running_counts import sweep_idle_counts
from models.db.session import statement_transactions
from models.db.tables import Job, JobRunning, Shard, TenantRunning, utcnow
from models.domain.status import ShardStatus
from tests.unit.test_finish_committed import _job, _results
from tests.unit.test_shard_store import new_model

Counts = dict[tuple[uuid.UUID, uuid.UUID], int]


def _counts(sessions: sessionmaker[Session], model: str) -> tuple[Counts, Counts]:
    """(kept by the triggers, counted now) for ``model``, keyed by (tenant, job)."""
    with sessions() as session:
        kept = session.execute(
            select(JobRunning.tenant_id, JobRunning.job_id, func.sum(JobRunning.n))
            .where(JobRunning.model == model)
            .group_by(JobRunning.tenant_id, JobRunning.job_id)
            .having(func.sum(JobRunning.n) != 0)  # rows at zero wait for the beat's sweep
        )
        counted = session.execute(
            select(Shard.tenant_id, Shard.job_id, func.count())
            .where(Shard.model == model, Shard.status == ShardStatus.RUNNING)
            .group_by(Shard.tenant_id, Shard.job_id)
        )
        return {(t, j): n for t, j, n in kept}, {(t, j): n for t, j, n in counted}


def _assert_exact(sessions: sessionmaker[Session], model: str) -> Counts:
    kept, counted = _counts(sessions, model)
    assert kept == counted
    with sessions() as session:
        # No slot below zero; a tenant's slots sum to its jobs'.
        below = select(func.count()).where(JobRunning.model == model, JobRunning.n < 0)
        assert session.scalar(below) == 0
        tenants = session.execute(
            select(TenantRunning.tenant_id, func.sum(TenantRunning.n))
            .where(TenantRunning.model == model)
            .group_by(TenantRunning.tenant_id)
        )
        by_tenant = {t: n for t, n in tenants if n}
    expected: dict[uuid.UUID, int] = {}
    for (tenant, _), n in counted.items():
        expected[tenant] = expected.get(tenant, 0) + n
    assert by_tenant == expected
    return kept


def _claim(sessions: sessionmaker[Session], model: str, n: int) -> list[ClaimedShard]:
    with statement_transactions(sessions) as session:
        shards = [claim_next_shard(session, model=model, worker="w", lease_s=60) for _ in range(n)]
    return [s for s in shards if s is not None]


def _finish(sessions: sessionmaker[Session], shard: ClaimedShard, *, fail: bool = False) -> None:
    results = _results(sessions, shard)
    failures = [CellFailure(r.index, "boom") for r in results] if fail else []
    finish_committed(
        sessions,
        shard=shard,
        worker="w",
        results=[] if fail else results,
        failures=failures,
        max_attempts=3,
        backoff_s=0,
    )


def test_every_way_in_and_out_of_running_keeps_the_count(
    sessions: sessionmaker[Session],
) -> None:
    model = new_model()
    first, second, third = (_job(sessions, model, cells=6) for _ in range(3))
    claimed = _claim(sessions, model, 9)
    assert len(claimed) == 9
    kept = _assert_exact(sessions, model)
    assert sorted(kept.values()) == [3, 3, 3]  # fair share spread them over the jobs

    mine = [s for s in claimed if s.job_id == first]
    _finish(sessions, mine[0])  # done
    _finish(sessions, mine[1], fail=True)  # its cell goes back to the queue
    _assert_exact(sessions, model)

    with sessions.begin() as session:  # a worker died: its lease lapses
        session.execute(
            update(Shard)
            .where(Shard.id == mine[2].id)
            .values(lease_until=utcnow() - timedelta(minutes=1))
        )
        # The sweep is database-wide: another test's lapsed lease may go with this one.
        assert release_expired_leases(session, now=utcnow()) >= 1
        assert session.get(Shard, mine[2].id).status == ShardStatus.QUEUED  # type: ignore[union-attr]
    _assert_exact(sessions, model)

    with sessions.begin() as session:  # cancelled while rendering
        job = session.get(Job, second)
        assert job is not None and cancel_job(session, job=job)
    with sessions.begin() as session:  # deleted while rendering
        delete_job_rows(session, job_id=third)
    assert _assert_exact(sessions, model) == {}

    with sessions.begin() as session:  # a row written as running (a restore, a test)
        shard = session.scalars(select(Shard).where(Shard.job_id == first).limit(1)).one()
        session.execute(
            update(Shard).where(Shard.id == shard.id).values(status=ShardStatus.RUNNING)
        )
        clone = {c.key: getattr(shard, c.key) for c in Shard.__table__.columns if c.key != "id"}
        session.add(Shard(**{**clone, "index": 1000, "status": ShardStatus.RUNNING}))
    assert list(_assert_exact(sessions, model).values()) == [2]


def test_many_workers_on_one_job_leave_it_exact(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    _job(sessions, model, cells=120)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(8):
                for shard in _claim(sessions, model, 2):
                    _finish(sessions, shard, fail=shard.index % 3 == 0)
        except BaseException as exc:  # reported below: a thread's failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors
    assert _assert_exact(sessions, model) == {}  # every claim was finished
    with sessions.begin() as session:  # the beat's sweep takes the rows left at zero
        assert sweep_idle_counts(session) > 0
        assert session.scalar(select(func.count()).where(JobRunning.model == model)) == 0
    midway = _claim(sessions, model, 5)
    assert list(_assert_exact(sessions, model).values()) == [len(midway)]
