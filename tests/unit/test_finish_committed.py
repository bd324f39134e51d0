"""finish_committed (models/db/finish_committed.py): the finish is its own statement
transaction and the settle a second one; a job is settled exactly once, also when its
last shards finish at the same time, and ``farm beat`` settles a job whose finisher
died between the two."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.cell_rows import queued_cells
from models.db.claims import ClaimedShard, claim_next_shard
from models.db.finish import CellResult, ShardCompletion
from models.db.finish_committed import finish_committed, settle_complete_jobs
from models.db.finish_sql import finish_row
from models.db.jobs import NewJob, create_jobs
from models.db.keys import ensure_tenant
from models.db.session import statement_transactions
from models.db.tables import Job
from models.db.webhook_tables import WebhookDelivery
from models.domain.spec import JobSpec
from models.domain.status import JobStatus
from tests.unit.test_shard_store import new_model


def _job(sessions: sessionmaker[Session], model: str, cells: int) -> uuid.UUID:
    spec = JobSpec.model_validate(
        {"prompts": ["a"], "seeds": list(range(cells)), "webhook_url": "https://example.com/h"}
    )
    with sessions.begin() as session:
        owner = ensure_tenant(session, name=f"committed-{uuid.uuid4().hex[:8]}")
        [created] = create_jobs(
            session, tenant_id=owner.id, requests=[NewJob(spec)], default_model=model, batch_size=1
        )
        return created.job.id


def _claim_all(sessions: sessionmaker[Session], model: str) -> list[ClaimedShard]:
    shards = []
    with statement_transactions(sessions) as session:
        while (shard := claim_next_shard(session, model=model, worker="w", lease_s=60)) is not None:
            shards.append(shard)
    return shards


def _results(sessions: sessionmaker[Session], shard: ClaimedShard) -> list[CellResult]:
    with sessions() as session:
        cells = queued_cells(session, job_id=shard.job_id, shard_index=shard.index)
    return [CellResult(c.index, f"k/{c.index}", "0" * 64, None, 5) for c in cells]


def _state(sessions: sessionmaker[Session], job_id: uuid.UUID) -> tuple[str, int, int]:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        completed = session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.job_id == job_id, WebhookDelivery.event == "job.completed")
        )
        return job.status, job.done, int(completed or 0)


def test_last_shards_finished_together_settle_the_job_once(
    sessions: sessionmaker[Session],
) -> None:
    model = new_model()
    job_id = _job(sessions, model, cells=6)
    shards = _claim_all(sessions, model)
    assert len(shards) == 6
    work = [(shard, _results(sessions, shard)) for shard in shards]
    completions: list[ShardCompletion] = []
    start = threading.Barrier(len(work))

    def finish(shard: ClaimedShard, results: list[CellResult]) -> None:
        start.wait()
        completions.append(
            finish_committed(
                sessions,
                shard=shard,
                worker="w",
                results=results,
                failures=[],
                max_attempts=3,
                backoff_s=1,
            )
        )

    threads = [threading.Thread(target=finish, args=w) for w in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c.recorded for c in completions) == [1] * 6
    assert [c.job_status for c in completions].count(JobStatus.SUCCEEDED) == 1
    assert _state(sessions, job_id) == (JobStatus.SUCCEEDED, 6, 1)


def test_beat_settles_a_job_whose_finisher_died_before_the_settle(
    sessions: sessionmaker[Session],
) -> None:
    model = new_model()
    job_id = _job(sessions, model, cells=3)
    for shard in _claim_all(sessions, model):
        with statement_transactions(sessions) as session:  # the finish, committed...
            finish_row(
                session,
                shard=shard,
                worker="w",
                results=_results(sessions, shard),
                failures=[],
                max_attempts=3,
                backoff_s=1,
            )
    # ... and then nothing: the worker died before settling.
    assert _state(sessions, job_id) == (JobStatus.RUNNING, 3, 0)
    with sessions.begin() as session:
        assert settle_complete_jobs(session) >= 1
    assert _state(sessions, job_id) == (JobStatus.SUCCEEDED, 3, 1)
    with sessions.begin() as session:
        settle_complete_jobs(session)  # settled once: nothing more
    assert _state(sessions, job_id) == (JobStatus.SUCCEEDED, 3, 1)
