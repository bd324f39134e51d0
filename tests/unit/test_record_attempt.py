"""record_attempt (models/db/record_attempt.py): the GPU worker's record of a shard. Its
extras come before the finish in one transaction, so they must land on cells that are
still queued when they run, and on no cell another attempt recorded; the job's
follow-up runs after, in its own transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.business_tables import GpuUsage
from models.db.claims import ClaimedShard
from models.db.finish import CellResult
from models.db.finish_extras import AnalysisRecord
from models.db.record_attempt import record_attempt
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

    # The last shard completes the job; the ledger has a row per attempt with images.
    assert _record(sessions, second, _results(sessions, second), []) == JobStatus.SUCCEEDED
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.done, job.held) == (2, 1)
        usage = select(func.count()).where(GpuUsage.job_id == job_id)
        assert session.scalar(usage) == 3
