"""Schemathesis fuzzes the live API from its OpenAPI schema: no input may cause a 5xx."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.infra.settings import normalize_database_url
from tests.integration.conftest import farm_env
from tests.services import FarmProcess, S3Server, free_port, wait_http_ok

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
        s3_endpoint_url=s3.endpoint_url,
        bucket=s3.bucket,
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


def test_no_input_makes_the_api_fail(live_api: tuple[str, str], tmp_path: Path) -> None:
    url, key = live_api
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
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
