"""record_attempt (models/db/record_attempt.py): the GPU worker's record of a shard. Its
extras come before the finish in one transaction, so they must land on cells that are
still queued when they run, and on no cell another attempt recorded; the job's
follow-up runs after, in its own transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models.db.business_tables import GpuUsage
from models.db.claims import ClaimedShard, claim_next_shard
from models.db.finish import CellResult
from models.db.finish_extras import AnalysisRecord
from models.db.record_attempt import record_attempt
from models.db.session import statement_transactions
from models.db.tables import Item, Job
from models.domain.status import JobStatus
from tests.unit.test_finish_committed import _claim_all, _job, _results
from tests.unit.test_shard_store import new_model


def _record(
    sessions: sessionmaker[Session],
    shard: ClaimedShard,
    results: list[CellResult],
    analyses: list[AnalysisRecord],
) -> JobStatus | None:
    _, final = record_attempt(
        sessions,
        analyses=analyses,
        device="gpu-test",
        progress_min_interval_s=0.0,
        shard=shard,
        worker="w",
        results=results,
        failures=[],
        max_attempts=3,
        backoff_s=0.0,
    )
    return final


def _items(sessions: sessionmaker[Session], job_id: uuid.UUID) -> list[Item]:
    with sessions() as session:
        return list(session.scalars(select(Item).where(Item.job_id == job_id).order_by(Item.index)))


def test_extras_land_with_the_cells_and_never_on_another_attempts_cell(
    sessions: sessionmaker[Session],
) -> None:
    model = new_model()
    job_id = _job(sessions, model, cells=2)
    first, second = _claim_all(sessions, model)
    [result] = _results(sessions, first)
    scored = AnalysisRecord(result.index, "score", "bright", 0.75, 3)
    held = CellResult(result.index, result.key, result.sha256, result.rating, 5, held=True)
    assert _record(sessions, first, [held], [scored]) is None  # one cell still to come

    [cell, other] = _items(sessions, job_id)
    assert (cell.status, cell.key, cell.device) == ("done", result.key, "gpu-test")
    assert (cell.score, cell.score_label, cell.hold) == (0.75, "bright", "held")
    assert other.status == "queued" and other.score is None and other.device is None

    # A late duplicate of the recorded cell under another key: recorded nothing, marked
    # nothing (its key is not the cell's).
    late = CellResult(result.index, "k/late", "1" * 64, None, 5, held=True)
    _record(sessions, first, [late], [AnalysisRecord(result.index, "score", "dark", 0.1, 3)])
    [again, _] = _items(sessions, job_id)
    assert (again.key, again.score, again.score_label) == (result.key, 0.75, "bright")

    # The last shard, with no analyses and nothing held, goes the common way (one
    # statement: farm_finish_shard v3 writes its ledger row and device) and completes
    # the job; the ledger has a row per attempt with images, the same either way.
    last = _results(sessions, second)
    assert _record(sessions, second, last, []) == JobStatus.SUCCEEDED
    [_, done] = _items(sessions, job_id)
    assert (done.status, done.key, done.device) == ("done", last[0].key, "gpu-test")
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.done, job.held) == (2, 1)
        rows = session.scalars(
            select(GpuUsage).where(GpuUsage.job_id == job_id).order_by(GpuUsage.id)
        ).all()
    shape = [(r.tenant_id, r.model, r.device, r.shard_index, r.cells, r.gpu_ms) for r in rows]
    assert shape == [
        (first.tenant_id, first.model, "gpu-test", first.index, 1, 5),
        (first.tenant_id, first.model, "gpu-test", first.index, 1, 5),  # the late duplicate
        (second.tenant_id, second.model, "gpu-test", second.index, 1, 5),
    ]


def test_the_finish_says_when_the_follow_up_has_work(sessions: sessionmaker[Session]) -> None:
    """farm_finish_shard v3's follow_up: the worker skips the follow-up's transaction
    only when the job is not paused, has not reached a GPU budget and asked for no
    progress webhooks."""
    model = new_model()
    plain = _job(sessions, model, cells=2)
    budgeted = _job(sessions, model, cells=2)
    with sessions.begin() as session:  # a budget already spent: the follow-up stops it
        session.execute(update(Job).where(Job.id == budgeted).values(max_gpu_ms=1))
    with statement_transactions(sessions) as session:  # one shard of each (fair share)
        claimed = [claim_next_shard(session, model=model, worker="w", lease_s=60) for _ in "ab"]
    shards = {s.job_id: s for s in claimed if s is not None}
    assert set(shards) == {plain, budgeted}
    outcomes = {}
    for job_id in (plain, budgeted):
        shard = shards[job_id]
        outcomes[job_id] = record_attempt(
            sessions,
            analyses=[],
            device="gpu-test",
            progress_min_interval_s=0.0,
            shard=shard,
            worker="w",
            results=_results(sessions, shard),
            failures=[],
            max_attempts=3,
            backoff_s=0.0,
        )
    assert outcomes[plain][0].follow_up is False and outcomes[plain][1] is None
    # The budgeted job's follow-up ran and stopped it: its waiting cell failed.
    assert outcomes[budgeted][0].follow_up is True
    assert outcomes[budgeted][1] == JobStatus.PARTIAL
