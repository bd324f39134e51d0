"""Storage against a server that checks signatures (SeaweedFS, ``strict_s3``): keys the
store would rewrite after signing are refused first; a refusal (a wrong secret) is
permanent and fails cells at once, while a store that answers 503 is tried again; a
worker checks its keys before it starts; ``/readyz`` and the files route name storage."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from models.db.tables import Item, Job
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from models.infra.storage import S3Storage, make_storage
from models.infra.storage_check import StorageProbe, check_writes
from models.infra.storage_errors import StorageError, UnsafeKey
from tests.conftest import ApiClient
from tests.fault_proxy import FaultProxy
from tests.s3_servers import S3Server, client_for
from tests.services import ROOT, free_port
from worker.runtime import build_runner, close_runner
from worker.shard_runner import Outcome

WRONG = SecretStr("not-the-secret-at-all-0123456789")


@pytest.fixture(scope="session")
def s3(seaweedfs: S3Server) -> S3Server:
    """Every test here needs a server that checks signatures (``--s3`` aside):
    `settings` and `api` use SeaweedFS."""
    return seaweedfs


def _storage(settings: Settings) -> S3Storage:
    storage = make_storage(settings)
    assert isinstance(storage, S3Storage)
    return storage


def _stored(settings: Settings) -> list[str]:
    listing = client_for(settings).list_objects_v2(
        Bucket=settings.s3_bucket, Prefix=f"{settings.s3_prefix}/"
    )
    return [o["Key"] for o in listing.get("Contents", [])]


@pytest.mark.parametrize("name", ["./x.png", "a/../x.png", "a//x.png", "a/.", ".."])
def test_a_key_with_a_dot_segment_is_refused_before_it_is_signed(
    settings: Settings, name: str
) -> None:
    storage = _storage(settings)
    key = f"{settings.s3_prefix}/{name}"
    with pytest.raises(UnsafeKey) as refused:
        storage.put(key, b"x", content_type="image/png")
    assert refused.value.permanent
    with pytest.raises(UnsafeKey):
        storage.url(key, expires_s=60)
    assert _stored(settings) == []


@pytest.mark.parametrize("prefix", ["./renders", "renders/..", "a//b", "r/./s", "a\x00b"])
def test_a_prefix_with_a_dot_segment_stops_the_process_at_start(
    settings: Settings, prefix: str
) -> None:
    with pytest.raises(ValidationError, match="FARM_S3_PREFIX"):
        Settings(**{**settings.model_dump(), "s3_prefix": prefix})


def test_a_prefix_with_outer_slashes_is_normalised(settings: Settings) -> None:
    fixed = Settings(**{**settings.model_dump(), "s3_prefix": "/farm/renders/"})
    assert fixed.s3_prefix == "farm/renders"


def test_a_wrong_secret_is_a_permanent_error_on_every_path(settings: Settings) -> None:
    good = _storage(settings)
    key = f"{settings.s3_prefix}/there.png"
    good.put(key, b"x", content_type="image/png")
    bad = _storage(settings.model_copy(update={"s3_secret_access_key": WRONG}))
    calls: list[Any] = [
        lambda: bad.put(key, b"y", content_type="image/png"),  # the lean signed PUT
        lambda: bad.get(key),
        lambda: bad.exists(key),
        bad.check,
    ]
    for call in calls:
        with pytest.raises(StorageError) as refused:
            call()
        assert refused.value.permanent, refused.value
        assert refused.value.status == 403, refused.value
    assert good.get(key) == b"x"  # the refused PUT changed nothing


def _job(api: ApiClient, seeds: list[int]) -> uuid.UUID:
    """A job on a model of its own: the runner below takes its shards and no other's."""
    model = f"sim-{uuid.uuid4().hex[:8]}"
    api.settings.models[model] = "simulated:0"
    response = api.client.post(
        "/v1/jobs", json={"prompts": ["a"], "seeds": seeds, "model": model}, headers=api.auth
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def _render_all(settings: Settings, job_id: uuid.UUID) -> int:
    """Run the job's shards until none is ready; how many attempts it took."""
    runner = build_runner(settings, warm_models=[])
    with runner.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        model = job.model
    attempts = 0
    try:
        while runner.run_next(model) == Outcome.RENDERED:
            runner.drain()
            attempts += 1
    finally:
        close_runner(runner)
    return attempts


def test_a_wrong_secret_fails_the_cells_at_once(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    job_id = _job(api, [1, 2])
    wrong = api.settings.model_copy(
        update={"s3_secret_access_key": WRONG, "retry_backoff_s": 0.0, "max_attempts": 3}
    )
    assert _render_all(wrong, job_id) == 1  # rendered once, not max_attempts times
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        items = session.query(Item).filter(Item.job_id == job_id).all()
    assert (job.status, job.failed, job.done) == ("failed", 2, 0)
    assert [i.attempts for i in items] == [1, 1]
    assert job.error is not None and "403" in job.error, job.error


def test_a_store_answering_503_is_tried_again(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    job_id = _job(api, [3])
    with FaultProxy(api.settings.s3_endpoint_url or "").running() as proxy:
        proxy.failing.set()
        flaky = api.settings.model_copy(
            update={"s3_endpoint_url": proxy.url, "retry_backoff_s": 0.0, "max_attempts": 3}
        )
        assert _render_all(flaky, job_id) == 3  # every attempt used: the error was transient
        refused = proxy.refused
    assert refused >= 3
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
    assert (job.status, job.failed) == ("failed", 1)
    assert job.error is not None and "503" in job.error


def test_through_the_proxy_signatures_hold(settings: Settings) -> None:
    """The fault proxy forwards the Host the client signed: uploads pass through it."""
    assert settings.s3_endpoint_url is not None
    with FaultProxy(settings.s3_endpoint_url).running() as proxy:
        via = _storage(settings.model_copy(update={"s3_endpoint_url": proxy.url}))
        key = f"{settings.s3_prefix}/via-proxy.png"
        via.put(key, b"p", content_type="image/png")
        assert via.get(key) == b"p"
        assert via.exists(key)
        via.check()
    assert proxy.forwarded >= 4


def _worker_env(settings: Settings, secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FARM_", "AWS_"))}
    env.update(
        FARM_DATABASE_URL=settings.database_url,
        FARM_BROKER_URL="redis://127.0.0.1:1/0",  # never reached: it stops before
        FARM_S3_ENDPOINT_URL=settings.s3_endpoint_url or "",
        FARM_S3_BUCKET=settings.s3_bucket,
        FARM_S3_PREFIX=settings.s3_prefix,
        FARM_DATA_DIR=str(settings.data_dir),
        FARM_MODEL="simulated",
        AWS_ACCESS_KEY_ID=settings.s3_access_key_id,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_DEFAULT_REGION="us-east-1",
    )
    return env


def test_a_worker_with_a_wrong_secret_refuses_to_start(settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "farm", "worker"],
        cwd=ROOT,
        env=_worker_env(settings, WRONG.get_secret_value()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "storage check failed, not starting" in done.stderr
    assert "403" in done.stderr
    assert "ready" not in done.stdout + done.stderr


def test_the_worker_check_is_a_put_with_the_workers_keys(settings: Settings) -> None:
    check_writes(make_storage(settings), prefix=settings.s3_prefix)
    assert _stored(settings) == [f"{settings.s3_prefix}/_farm/worker-probe"]


@pytest.fixture
def wrong_api(settings: Settings, api: ApiClient) -> Iterator[TestClient]:
    """The same farm (database, tenant) through an API process with a wrong secret."""
    wrong = settings.model_copy(update={"s3_secret_access_key": WRONG})
    with TestClient(create_app(wrong, publisher=LocalPublisher())) as client:
        yield client


def test_readyz_reports_storage(api: ApiClient, wrong_api: TestClient) -> None:
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}
    refused = wrong_api.get("/readyz")
    assert refused.status_code == 503
    body = refused.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["storage"].startswith("error: storage refused the request: 403")


def test_readyz_while_storage_is_unreachable_is_degraded_not_down(settings: Settings) -> None:
    away = settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    with TestClient(create_app(away, publisher=LocalPublisher())) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "degraded"
    assert answer.json()["checks"]["storage"].startswith("error: storage unreachable")


def test_a_probe_storm_asks_the_store_once_per_interval(settings: Settings) -> None:
    now = [0.0]
    probe = StorageProbe(make_storage(settings), interval_s=5.0, clock=lambda: now[0])
    for _ in range(50):
        assert probe.status().ok
    assert probe.checks == 1
    now[0] = 5.0
    assert probe.status().ok
    assert probe.checks == 2


def test_the_files_route_names_storage_when_it_refuses(
    api: ApiClient, wrong_api: TestClient
) -> None:
    job_id = _job(api, [5])
    answer = wrong_api.get(f"/web/jobs/{job_id}/files/manifest.json", headers=api.auth)
    assert answer.status_code == 502, answer.text
    body = answer.json()
    assert body["error"] == "bad_gateway"
    assert body["message"].startswith("storage refused")
    assert body["detail"][0]["field"] == "storage"


def test_the_files_route_answers_503_while_storage_is_away(
    api: ApiClient, settings: Settings
) -> None:
    job_id = _job(api, [6])
    with FaultProxy(settings.s3_endpoint_url or "").running() as proxy:
        proxy.failing.set()
        via = settings.model_copy(update={"s3_endpoint_url": proxy.url})
        with TestClient(create_app(via, publisher=LocalPublisher())) as client:
            answer = client.get(f"/web/jobs/{job_id}/files/manifest.json", headers=api.auth)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert answer.json()["error"] == "service_unavailable"
    assert answer.json()["detail"][0]["field"] == "storage"


def test_the_files_route_serves_and_signs_on_the_signing_server(api: ApiClient) -> None:
    """The success path of the same route: the manifest from the bucket, an image as a
    redirect to a presigned URL that SeaweedFS accepts."""
    job_id = _job(api, [7])
    assert _render_all(api.settings, job_id) == 1
    base = f"/web/jobs/{job_id}/files"
    manifest = api.client.get(f"{base}/manifest.json", headers=api.auth)
    assert manifest.status_code == 200, manifest.text
    item = api.client.get(f"/v1/jobs/{job_id}/images", headers=api.auth).json()["items"][0]
    name = item["key"].rsplit("/", 1)[-1]
    moved = api.client.get(f"{base}/{name}", headers=api.auth, follow_redirects=False)
    assert moved.status_code == 307
    image = httpx.get(moved.headers["location"])
    assert image.status_code == 200
    assert image.content.startswith(b"\x89PNG")
