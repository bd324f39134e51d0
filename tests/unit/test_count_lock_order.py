"""Two cancels of two jobs of one tenant, each job with shards rendering, commit at the
same time and both succeed: the running counts' rows are taken in key order
(models/db/running_counts.lock_counts_in_order), not in the order the shards were
written, which made the two take the tenant's slots in opposite orders and deadlock."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from models.db.job_states import cancel_job
from models.db.jobs import NewJob, create_jobs
from models.db.keys import ensure_tenant
from models.db.tables import Job, JobRunning, Shard, utcnow
from models.domain.spec import JobSpec
from models.domain.status import JobStatus, ShardStatus
from tests.unit.test_shard_store import new_model

WAIT_S = 120  # for a lock wait to show (a loaded 2-core machine): a condition, not a pace


def _two_jobs(sessions: sessionmaker[Session], model: str) -> tuple[uuid.UUID, uuid.UUID]:
    spec = JobSpec.model_validate({"prompts": ["a"], "seeds": list(range(8))})
    with sessions.begin() as session:
        owner = ensure_tenant(session, name=f"order-{uuid.uuid4().hex[:8]}")
        made = create_jobs(
            session,
            tenant_id=owner.id,
            requests=[NewJob(spec), NewJob(spec)],
            default_model=model,
            batch_size=1,
        )
        return made[0].job.id, made[1].job.id


def _start(sessions: sessionmaker[Session], job_id: uuid.UUID, slots: tuple[int, int]) -> None:
    """Two of the job's shards rendering: the first (by index) in slot ``slots[0]``,
    the next after it in slot ``slots[1]`` (a cancel writes them in that order)."""
    with sessions.begin() as session:
        query = select(Shard.id).where(Shard.job_id == job_id).order_by(Shard.index)
        ids = list(session.scalars(query))
        first = next(i for i in ids if i % 4 == slots[0])
        second = next(i for i in ids if i % 4 == slots[1] and i > first)
        session.execute(
            update(Shard)
            .where(Shard.id.in_([first, second]))
            .values(status=ShardStatus.RUNNING, claimed_by="w", lease_until=utcnow())
        )


def _lock_waiters(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        query = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(session.scalar(query) or 0)


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_cancels_over_one_tenants_slots_both_commit(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    first, second = _two_jobs(sessions, model)
    _start(sessions, first, (1, 2))  # the first cancel writes slot 1, then slot 2
    _start(sessions, second, (2, 1))  # the second: slot 2, then slot 1
    errors: list[BaseException] = []

    def cancel(job_id: uuid.UUID) -> None:
        try:
            with sessions.begin() as session:
                job = session.get(Job, job_id)
                assert job is not None and cancel_job(session, job=job)
        except BaseException as exc:  # reported below
            errors.append(exc)

    # A third transaction holds the first job's row for slot 1, so the first cancel
    # stops inside its count rows (with the tenant's slot 1 taken, in shard order); the
    # second cancel then runs until it waits for the first.
    with sessions.begin() as holder:
        holder.execute(
            select(JobRunning.n)
            .where(JobRunning.job_id == first, JobRunning.slot == 1)
            .with_for_update()
        ).one()
        threads = [threading.Thread(target=cancel, args=(job_id,)) for job_id in (first, second)]
        threads[0].start()
        _until(lambda: _lock_waiters(sessions) >= 1)
        threads[1].start()
        _until(lambda: _lock_waiters(sessions) >= 2)
    for thread in threads:
        thread.join(WAIT_S)
    assert errors == []  # a deadlock aborts one of them (psycopg's DeadlockDetected)
    with sessions() as session:
        statuses = session.scalars(select(Job.status).where(Job.id.in_([first, second])))
        assert set(statuses) == {JobStatus.CANCELLED}
        running = select(func.sum(JobRunning.n)).where(JobRunning.model == model)
        assert session.scalar(running) == 0
