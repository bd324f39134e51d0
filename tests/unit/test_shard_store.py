"""Claims and completions are conditional: duplicates and late workers change nothing."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session, sessionmaker

from models.job_store import NewJob, create_jobs, get_job
from models.key_store import ensure_tenant
from models.shard_store import CellResult, claim_shard, complete_shard, fail_shard, shard_cells
from models.spec import JobSpec
from models.tables import Job


def _job(sessions: sessionmaker[Session], **spec: object) -> tuple[uuid.UUID, list[int]]:
    with sessions.begin() as session:
        tenant = ensure_tenant(session, name=f"store-{uuid.uuid4().hex[:8]}")
        [created] = create_jobs(
            session,
            tenant_id=tenant.id,
            requests=[NewJob(JobSpec.model_validate({"prompts": ["a"], "seeds": [1, 2], **spec}))],
            default_model="tiny-sdxl",
            batch_size=4,
        )
        return created.job.id, created.shard_ids


def _reload(sessions: sessionmaker[Session], job_id: uuid.UUID) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_a_shard_is_claimed_once(sessions: sessionmaker[Session]) -> None:
    job_id, [shard_id] = _job(sessions)
    with sessions.begin() as session:
        first = claim_shard(session, shard_id=shard_id, worker="w1", lease_s=60)
    with sessions.begin() as session:
        second = claim_shard(session, shard_id=shard_id, worker="w2", lease_s=60)
    assert first is not None and first.attempts == 1
    assert second is None
    assert _reload(sessions, job_id).status == "running"


def test_completion_counts_each_cell_once(sessions: sessionmaker[Session]) -> None:
    job_id, [shard_id] = _job(sessions)
    with sessions.begin() as session:
        shard = claim_shard(session, shard_id=shard_id, worker="w1", lease_s=60)
        assert shard is not None
        cells = shard_cells(session, shard=shard)
    results = [CellResult(c.index, f"k/{c.index}", "0" * 64, None, 10) for c in cells]
    with sessions.begin() as session:
        assert complete_shard(session, shard=shard, worker="w1", results=results).recorded == 2
    with sessions.begin() as session:  # a late duplicate completion
        assert complete_shard(session, shard=shard, worker="w1", results=results).recorded == 0
    job = _reload(sessions, job_id)
    assert (job.done, job.status) == (2, "succeeded")
    assert job.finished_at is not None


def test_retry_then_final_failure(sessions: sessionmaker[Session]) -> None:
    job_id, [shard_id] = _job(sessions)
    with sessions.begin() as session:
        shard = claim_shard(session, shard_id=shard_id, worker="w1", lease_s=60)
        assert shard is not None
        fail_shard(session, shard=shard, worker="w1", error="boom", retry=True)
    with sessions.begin() as session:
        shard = claim_shard(session, shard_id=shard_id, worker="w2", lease_s=60)
        assert shard is not None and shard.attempts == 2
        fail_shard(session, shard=shard, worker="w2", error="boom again", retry=False)
    job = _reload(sessions, job_id)
    assert (job.failed, job.done, job.status, job.error) == (2, 0, "failed", "boom again")


def test_tenant_scoping_of_get_job(sessions: sessionmaker[Session]) -> None:
    job_id, _ = _job(sessions)
    with sessions() as session:
        assert get_job(session, tenant_id=uuid.uuid4(), job_id=job_id) is None
