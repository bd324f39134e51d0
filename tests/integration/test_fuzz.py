"""Schemathesis fuzzes the live API from its OpenAPI schema: no input may cause a 5xx."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from api.routes import (
    admin,
    campaigns,
    files,
    health,
    job_control,
    jobs,
    prompts,
    usage,
    web,
    web_control,
    web_files,
    webhooks,
)
from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.infra.settings import normalize_database_url
from tests.integration.conftest import farm_env
from tests.s3_servers import S3Server
from tests.services import FarmProcess, free_port, wait_http_ok

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_api(
    pg_url: str, redis_url: str, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A real `farm api` process with no worker: fuzzed jobs just wait in the queue."""
    data_dir = tmp_path_factory.mktemp("fuzz")
    env = farm_env(
        pg_url=pg_url,
        redis_url=redis_url,
        s3=s3,
        data_dir=data_dir,
        model_cache=data_dir / "models",
        prefix="fuzz",
        models={"simulated": "simulated:0"},
    )
    env.update({"FARM_MODEL": "simulated", "FARM_RATE_LIMIT_PER_S": "0"})
    engine = make_engine(normalize_database_url(pg_url))
    with make_session_factory(engine).begin() as session:
        key = create_api_key(session, tenant_name=f"fuzz-{uuid.uuid4().hex[:6]}")
    engine.dispose()
    port = free_port()
    api = FarmProcess(["api", "--port", str(port)], env).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}", key
    finally:
        api.stop()


def test_the_schema_covers_every_route(live_api: tuple[str, str]) -> None:
    """What schemathesis fuzzes is every route a client can call: the JSON API, the
    campaigns and webhooks, and the web pages and forms (only /, /metrics and the
    static files stay out of the schema)."""
    url, _ = live_api
    schema = httpx.get(f"{url}/openapi.json").json()
    paths = schema["paths"].items()
    documented = {(path, method.upper()) for path, ops in paths for method in ops}
    routers = [jobs.router, campaigns.router, webhooks.router, web.router, web_files.router]
    routers += [files.router, health.router, prompts.router, job_control.router]
    routers += [usage.router, admin.router, web_control.router]
    served = {
        (route.path.replace(":path}", "}"), method)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    assert len(served) >= 30
    assert served - documented == set()
    assert any(path.startswith("/web/") for path, _ in documented)


def _existing_ids(url: str, key: str) -> dict[str, str]:
    """A job and a campaign of the fuzzing tenant: the routes that take an id reach
    their real work with these, not only their 404."""
    auth = {"Authorization": f"Bearer {key}"}
    spec = {"prompts": ["1girl"], "seeds": [1]}
    job = httpx.post(f"{url}/v1/jobs", json=spec, headers=auth).json()["id"]
    body = {"name": "fuzzed", "schedule": "@daily", "spec": spec}
    campaign = httpx.post(f"{url}/v1/campaigns", json=body, headers=auth).json()["id"]
    return {"job_id": job, "campaign_id": campaign}


def test_no_input_makes_the_api_fail(live_api: tuple[str, str], tmp_path: Path) -> None:
    url, key = live_api
    config = tmp_path / "schemathesis.toml"
    ids = _existing_ids(url, key)
    config.write_text(
        "[parameters]\n" + "".join(f'"path.{name}" = "{value}"\n' for name, value in ids.items())
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {key}",
            "--max-examples",
            "40",
            "--seed",
            "20261124",
            "--request-timeout",
            "20",
            "--no-color",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(result.stdout[-3000:])
    assert " passed" in result.stdout  # it ran cases (and none failed)
