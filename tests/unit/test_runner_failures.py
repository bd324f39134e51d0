"""A model that cannot load fails its cells (bounded), never leaves a shard hanging."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Job, Shard
from tests.conftest import ApiClient
from worker.runtime import build_runner, close_runner
from worker.shard_runner import Outcome


def test_a_model_that_cannot_load_fails_its_cells(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    model = f"broken-{uuid.uuid4().hex[:6]}"
    api.settings.models[model] = "/nonexistent/models/broken"  # a folder that is not there
    job = api.client.post(
        "/v1/jobs", json={"prompts": ["a"], "seeds": [1, 2], "model": model}, headers=api.auth
    ).json()
    settings = api.settings.model_copy(update={"max_attempts": 2, "retry_backoff_s": 0.0})
    runner = build_runner(settings, warm_models=[])
    try:
        for _ in range(2):
            assert runner.run_next(model) == Outcome.RENDERED
            runner.drain()
        assert runner.run_next(model) == Outcome.NOTHING
    finally:
        close_runner(runner)
    with sessions() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None
        shard_status = session.scalar(select(Shard.status).where(Shard.job_id == row.id))
    assert (row.status, row.failed, row.done) == ("failed", 2, 0)
    assert row.error is not None
    assert "model failed to load" in row.error
    assert shard_status == "failed"
