"""POST /v1/jobs/{id}/retry re-runs only the failed cells."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.cell_rows import queued_cells
from models.db.claims import claim_next_shard
from models.db.finish import CellFailure, CellResult, finish_attempt
from models.db.tables import Item, Shard
from tests.conftest import ApiClient


def test_retry_requeues_only_failed_cells(api: ApiClient, sessions: sessionmaker[Session]) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    api.settings.models[model] = "simulated:0"
    job = api.client.post(
        "/v1/jobs", json={"prompts": ["a"], "seeds": [1, 2], "model": model}, headers=api.auth
    ).json()
    with sessions.begin() as session:
        shard = claim_next_shard(session, model=model, worker="w", lease_s=60)
        assert shard is not None
        good, bad = queued_cells(session, job_id=shard.job_id, shard_index=shard.index)
        finish_attempt(
            session,
            shard=shard,
            worker="w",
            results=[CellResult(good.index, "k", "0" * 64, None, 1)],
            failures=[CellFailure(bad.index, "render failed: boom")],
            max_attempts=1,
            backoff_s=0,
        )
    partial = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth).json()
    assert (partial["status"], partial["done"], partial["failed"]) == ("partial", 1, 1)
    images = api.client.get(f"/v1/jobs/{job['id']}/images", headers=api.auth).json()["items"]
    assert images[1]["error"] == "render failed: boom"

    while not api.publisher.queue.empty():
        api.publisher.queue.get_nowait()
    response = api.client.post(f"/v1/jobs/{job['id']}/retry", headers=api.auth)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["done"], body["failed"], body["finished_at"]) == (
        "running",
        1,
        0,
        None,
    )
    assert api.publisher.queue.get_nowait() == (model, shard.id)
    with sessions() as session:
        statuses = dict(
            session.execute(
                select(Item.index, Item.status).where(Item.job_id == uuid.UUID(job["id"]))
            ).all()
        )
        assert session.scalar(select(Shard.status).where(Shard.id == shard.id)) == "queued"
    assert statuses == {good.index: "done", bad.index: "queued"}
    again = api.client.post(f"/v1/jobs/{job['id']}/retry", headers=api.auth)
    assert again.status_code == 409
