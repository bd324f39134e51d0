"""Helpers of the business-control tests: a tenant with its own key and model, the app
with an operator key, and an in-process worker that renders until nothing is left."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from models.db.keys import create_api_key, tenant_for_key
from models.db.tables import Job
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from tests.s3_servers import client_for
from worker.runtime import build_runner, close_runner
from worker.shard_runner import Outcome

OPERATOR_KEY = "op_" + uuid.uuid4().hex
OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}


def new_model() -> str:
    """A model of the test's own: a worker serves every queued shard of its model."""
    return f"biz-{uuid.uuid4().hex[:8]}"


@dataclass
class Tenant:
    client: TestClient
    auth: dict[str, str]
    id: uuid.UUID
    name: str
    settings: Settings
    publisher: LocalPublisher
    model: str

    def submit(self, **fields: Any) -> dict[str, Any]:
        body = {"prompts": ["1girl, solo"], "seeds": [1], "model": self.model, **fields}
        response = self.client.post("/v1/jobs", json=body, headers=self.auth)
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}", headers=self.auth)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def images(self, job_id: str) -> list[dict[str, Any]]:
        page = self.client.get(f"/v1/jobs/{job_id}/images", headers=self.auth).json()
        items: list[dict[str, Any]] = page["items"]
        return items


@contextmanager
def tenant_app(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    seconds_per_image: float = 0.0,
    **changes: Any,
) -> Iterator[Tenant]:
    """The real app with an operator key, a fresh tenant, and a simulated model of its own."""
    model = new_model()
    updated = settings.model_copy(
        update={
            "models": {**settings.models, model: f"simulated:{seconds_per_image}"},
            "admin_keys": OPERATOR_KEY,
            **changes,
        }
    )
    name = f"biz-{uuid.uuid4().hex[:8]}"
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=name)
        tenant_id = tenant_for_key(session, key=key)
    assert tenant_id is not None
    publisher = LocalPublisher()
    with TestClient(create_app(updated, publisher=publisher)) as client:
        auth = {"Authorization": f"Bearer {key}"}
        yield Tenant(client, auth, tenant_id, name, updated, publisher, model)


def render_all(settings: Settings, model: str, *, one_by_one: bool = False) -> int:
    """An in-process worker (the real runtime: screening, listeners) renders every queued
    shard of ``model``; returns how many it took. Its writers and listeners are drained.
    ``one_by_one``: each shard is recorded before the next is claimed (no overlap)."""
    runner = build_runner(settings, warm_models=[model])
    taken = 0
    try:
        while runner.run_next(model) is not Outcome.NOTHING:
            taken += 1
            if one_by_one:
                runner.drain()
        runner.drain()
    finally:
        close_runner(runner)
    return taken


def job_row(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        return job


def bucket_keys(settings: Settings, prefix: str) -> list[str]:
    """Every object key under ``prefix`` in the test bucket (moto's S3 over HTTP)."""
    client = client_for(settings)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.s3_bucket, Prefix=prefix
    ):
        keys += [obj["Key"] for obj in page.get("Contents", []) if "Key" in obj]
    return keys
