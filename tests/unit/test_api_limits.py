"""Abuse resistance: body size, request rate and cell quotas answer 413/429 with Retry-After."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from models.db.keys import create_api_key
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings

SPEC = {"prompts": ["1girl"], "seeds": [1, 2, 3, 4]}


def client_with(
    settings: Settings, sessions: sessionmaker[Session], **limits: int
) -> tuple[TestClient, dict[str, str]]:
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=f"limits-{uuid.uuid4().hex[:8]}")
    app = create_app(settings.model_copy(update=limits), publisher=LocalPublisher())
    return TestClient(app), {"Authorization": f"Bearer {key}"}


@pytest.fixture
def limited(
    settings: Settings, sessions: sessionmaker[Session], request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    client, auth = client_with(settings, sessions, **request.param)
    with client:
        yield client, auth


@pytest.mark.parametrize("limited", [{"max_body_bytes": 1000}], indirect=True)
def test_a_body_over_the_limit_is_413(limited: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = limited
    response = client.post("/v1/jobs", json={"prompts": ["x" * 2000]}, headers=auth)
    assert response.status_code == 413
    assert response.json()["detail"][0]["field"] == "body"
    assert client.post("/v1/jobs", json=SPEC, headers=auth).status_code == 201


@pytest.mark.parametrize("limited", [{"rate_limit_per_s": 5}], indirect=True)
def test_requests_over_the_rate_are_429_with_retry_after(
    limited: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = limited
    codes = [client.get("/v1/jobs", headers=auth).status_code for _ in range(30)]
    assert 429 in codes
    assert codes.count(200) >= 5
    refused = next(
        r for r in (client.get("/v1/jobs", headers=auth) for _ in range(10)) if r.status_code == 429
    )
    assert refused.headers["retry-after"] == "1"


@pytest.mark.parametrize("limited", [{"max_active_cells": 6}], indirect=True)
def test_active_cell_quota(limited: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = limited
    assert client.post("/v1/jobs", json=SPEC, headers=auth).status_code == 201
    response = client.post("/v1/jobs", json=SPEC, headers=auth)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "60"
    assert "limit of 6" in response.json()["message"]
    # Cancelling frees the quota.
    [job] = client.get("/v1/jobs", headers=auth).json()["items"]
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert client.post("/v1/jobs", json=SPEC, headers=auth).status_code == 201


@pytest.mark.parametrize("limited", [{"max_cells_per_day": 10}], indirect=True)
def test_daily_cell_quota(limited: tuple[TestClient, dict[str, str]]) -> None:
    client, auth = limited
    for _ in range(2):
        job = client.post("/v1/jobs", json=SPEC, headers=auth).json()
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)  # cancelled still counts
    response = client.post("/v1/jobs", json=SPEC, headers=auth)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 80_000  # the window frees in ~24 h
    bulk = client.post("/v1/jobs/bulk", json={"jobs": [SPEC]}, headers=auth)
    assert bulk.status_code == 429
