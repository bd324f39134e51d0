"""The poll front door (api/fast_poll.py): the same answers as the FastAPI route, on
real Postgres and Redis, without the SQLAlchemy engine."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api.fast_poll import POLL_APPLICATION_NAME
from api.main import create_app
from migrations.apply import upgrade
from models.db.keys import create_api_key, revoke_api_key
from models.db.session import make_engine, make_session_factory
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from tests.conftest import ApiClient

SPEC = {
    "prompts": ["1girl", "1boy"],
    "seeds": [1, 2],
    "name": "poll me",
    "labels": {"campaign": "spring"},
    "priority": "high",
}


def _submit(api: ApiClient) -> str:
    created = api.client.post("/v1/jobs", json=SPEC, headers=api.auth)
    assert created.status_code == 201, created.text
    job_id: str = created.json()["id"]
    return job_id


def test_poll_body_is_the_job_view_of_the_list_route(api: ApiClient) -> None:
    job_id = _submit(api)
    polled = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth)
    listed = api.client.get("/v1/jobs", headers=api.auth).json()["items"]
    assert polled.status_code == 200
    assert polled.headers["content-type"] == "application/json"
    assert polled.headers["cache-control"] == "no-cache"
    assert polled.json() == next(j for j in listed if j["id"] == job_id)
    assert polled.json()["labels"] == {"campaign": "spring"} and polled.json()["total"] == 4


def test_polls_do_not_need_the_sqlalchemy_engine(api: ApiClient) -> None:
    """Proof that the front door answered: with the engine pointing nowhere, the
    FastAPI routes fail, polls do not."""
    job_id = _submit(api)
    state = api.client.app.state.farm  # type: ignore[attr-defined]
    dead = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    state.sessions = make_session_factory(dead)
    try:
        with pytest.raises(OperationalError):
            api.client.get("/v1/jobs", headers=api.auth)
        polled = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth)
        assert polled.status_code == 200 and polled.json()["id"] == job_id
    finally:
        dead.dispose()


def test_etag_and_304(api: ApiClient) -> None:
    job_id = _submit(api)
    first = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    same = api.client.get(f"/v1/jobs/{job_id}", headers={**api.auth, "If-None-Match": etag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.auth)
    changed = api.client.get(f"/v1/jobs/{job_id}", headers={**api.auth, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def _error(response: object) -> dict[str, object]:
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error", "message", "detail"}
    return body


def test_bad_keys_are_401_in_the_error_shape(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    job_id = _submit(api)
    missing = api.client.get(f"/v1/jobs/{job_id}")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in str(_error(missing)["message"])
    unknown = api.client.get(f"/v1/jobs/{job_id}", headers={"Authorization": "Bearer farm_nope"})
    assert unknown.status_code == 401 and _error(unknown)["error"] == "unauthorized"
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=f"revoked-{uuid.uuid4().hex[:8]}")
        revoke_api_key(session, prefix=key[:12])
    revoked = api.client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
    assert revoked.status_code == 401


def test_other_tenants_and_unknown_ids_are_404(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    job_id = _submit(api)
    with sessions.begin() as session:
        other = create_api_key(session, tenant_name=f"other-{uuid.uuid4().hex[:8]}")
    theirs = api.client.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {other}"})
    assert theirs.status_code == 404 and _error(theirs)["message"] == f"no job {job_id!r}"
    unknown = uuid.uuid4()
    absent = api.client.get(f"/v1/jobs/{unknown}", headers=api.auth)
    assert absent.status_code == 404 and _error(absent)["error"] == "not_found"
    # Not a UUID: FastAPI's route answers, in the same shape.
    garbage = api.client.get("/v1/jobs/not-a-uuid", headers=api.auth)
    assert garbage.status_code == 404 and _error(garbage)["message"] == "no job 'not-a-uuid'"


def test_each_poll_writes_an_access_log_line(
    api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = _submit(api)
    with caplog.at_level(logging.INFO, logger="api.requests"):
        api.client.get(f"/v1/jobs/{job_id}", headers=api.auth)
        api.client.get(f"/v1/jobs/{uuid.uuid4()}", headers=api.auth)
    lines = [r for r in caplog.records if r.name == "api.requests"]
    assert [(r.status, r.job_id) for r in lines][:1] == [(200, job_id)]  # type: ignore[attr-defined]
    assert lines[1].status == 404 and lines[1].path.startswith("/v1/jobs/")  # type: ignore[attr-defined]
    assert all(r.duration_ms >= 0 for r in lines)  # type: ignore[attr-defined]


def test_a_dropped_connection_costs_no_failed_poll(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    """Postgres restarting drops every connection; the next poll reconnects."""
    job_id = _submit(api)
    assert api.client.get(f"/v1/jobs/{job_id}", headers=api.auth).status_code == 200
    with sessions.begin() as session:
        killed = session.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": POLL_APPLICATION_NAME},
        ).scalar_one()
    assert killed >= 1
    for _ in range(3):
        assert api.client.get(f"/v1/jobs/{job_id}", headers=api.auth).status_code == 200


@pytest.fixture(params=["redis", "in-process"])
def limited_api(
    request: pytest.FixtureRequest, settings: Settings, redis_url: str
) -> Iterator[ApiClient]:
    """The rate window in Redis, or (no Redis broker) in the API process."""
    broker = redis_url if request.param == "redis" else ""
    limited = settings.model_copy(update={"broker_url": broker, "rate_limit_per_s": 3})
    engine = make_engine(limited.sqlalchemy_url)
    with make_session_factory(engine).begin() as session:
        key = create_api_key(session, tenant_name=f"limited-{uuid.uuid4().hex[:8]}")
    engine.dispose()
    publisher = LocalPublisher()
    with TestClient(create_app(limited, publisher=publisher)) as client:
        yield ApiClient(client, key, publisher, limited)


def test_polls_count_against_the_tenants_rate(limited_api: ApiClient) -> None:
    job_id = str(uuid.uuid4())
    answers = [
        limited_api.client.get(f"/v1/jobs/{job_id}", headers=limited_api.auth) for _ in range(12)
    ]
    codes = [a.status_code for a in answers]
    # 3 per second: twelve quick polls span at most two windows.
    assert set(codes) == {404, 429} and codes.count(404) <= 6, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert _error(refused)["error"] == "too_many_requests"


def test_embedded_sqlite_polls_through_fastapi(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="", broker_url="")
    upgrade(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    with make_session_factory(engine).begin() as session:
        key = create_api_key(session, tenant_name="solo")
    engine.dispose()
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(settings, publisher=LocalPublisher())) as client:
        job_id = client.post("/v1/jobs", json=SPEC, headers=auth).json()["id"]
        polled = client.get(f"/v1/jobs/{job_id}", headers=auth)
        assert polled.status_code == 200 and polled.json()["name"] == "poll me"
        etag = polled.headers["etag"]
        again = client.get(f"/v1/jobs/{job_id}", headers={**auth, "If-None-Match": etag})
        assert again.status_code == 304
