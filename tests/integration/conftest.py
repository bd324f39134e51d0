"""A running farm: `farm api` and `farm worker` processes on real Postgres, Redis and S3.

With FARM_TEST_VIA_PGBOUNCER=1 the farm's processes reach Postgres through a real
PgBouncer in transaction mode (tests/pgbouncer.py); migrations and the tests' own
checks go straight to Postgres."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from farm.client import FarmClient
from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.infra.settings import Settings, normalize_database_url
from tests.conftest import TEST_MODELS
from tests.pgbouncer import VIA_PGBOUNCER, PgBouncer
from tests.s3_servers import S3Server
from tests.services import FarmProcess, free_port, wait_http_ok


@dataclass
class Farm:
    env: dict[str, str]
    api_url: str
    key: str
    settings: Settings
    api: FarmProcess
    workers: list[FarmProcess]

    @contextmanager
    def sessions(self) -> Iterator[sessionmaker[Session]]:
        engine = make_engine(normalize_database_url(self.settings.database_url))
        try:
            yield make_session_factory(engine)
        finally:
            engine.dispose()

    def client(self) -> FarmClient:
        return FarmClient(self.api_url, self.key)

    def start_worker(self, model: str = "tiny-sdxl") -> FarmProcess:
        worker = FarmProcess(["worker", "--model", model], self.env).start()
        worker.wait_for_line("ready.", timeout_s=180)
        self.workers.append(worker)
        return worker


def farm_env(
    *,
    pg_url: str,
    redis_url: str,
    s3: S3Server,
    s3_endpoint_url: str | None = None,  # another way in: the fault proxy's
    data_dir: Path,
    model_cache: Path,
    prefix: str,
    models: dict[str, str],
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(
        {
            "FARM_DATABASE_URL": pg_url,
            "FARM_BROKER_URL": redis_url,
            "FARM_S3_ENDPOINT_URL": s3_endpoint_url or s3.endpoint_url,
            "FARM_S3_BUCKET": s3.bucket,
            "FARM_S3_PREFIX": prefix,
            "FARM_MODEL": "tiny-sdxl",
            "FARM_MODELS": json.dumps(models),
            "FARM_MODEL_CACHE_DIR": str(model_cache),
            "FARM_DATA_DIR": str(data_dir),
            "FARM_METRICS_PORT": "0",  # off unless a test asks: workers would share 9100
            **s3.env(),  # as boto3 reads them: the way production passes keys
        }
    )
    return env


@contextmanager
def running_farm(
    *,
    pg_url: str,
    redis_url: str,
    s3: S3Server,
    s3_endpoint_url: str | None = None,
    model_cache: Path,
    data_dir: Path,
    models: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    worker_model: str = "tiny-sdxl",
    pooled_url: str | None = None,
) -> Iterator[Farm]:
    """`farm api` plus one `farm worker` process; stopped (gracefully) at the end.
    ``pooled_url``: the processes' database_url, through a transaction pooler."""
    models = dict(models or TEST_MODELS)
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    env = farm_env(
        pg_url=pg_url,
        redis_url=redis_url,
        s3=s3,
        s3_endpoint_url=s3_endpoint_url,
        data_dir=data_dir,
        model_cache=model_cache,
        prefix=prefix,
        models=models,
    )
    if pooled_url is not None:
        env["FARM_DATABASE_URL"] = pooled_url
        env["FARM_DB_TRANSACTION_POOLER"] = "1"
        env["FARM_MIGRATION_DATABASE_URL"] = pg_url
    env.update(extra_env or {})
    settings = Settings(
        database_url=pg_url,
        broker_url=redis_url,
        s3_endpoint_url=s3_endpoint_url or s3.endpoint_url,
        s3_bucket=s3.bucket,
        s3_prefix=prefix,
        s3_access_key_id=s3.access_key,
        s3_secret_access_key=s3.secret_key,
        model="tiny-sdxl",
        models=models,
        data_dir=data_dir,
    )
    engine = make_engine(normalize_database_url(pg_url))
    with make_session_factory(engine).begin() as session:
        key = create_api_key(session, tenant_name=f"it-{uuid.uuid4().hex[:6]}")
    engine.dispose()
    port = free_port()
    api = FarmProcess(["api", "--port", str(port)], env).start()
    farm = Farm(env, f"http://127.0.0.1:{port}", key, settings, api, [])
    try:
        wait_http_ok(f"{farm.api_url}/healthz")
        farm.start_worker(worker_model)
        yield farm
    finally:
        for worker in farm.workers:
            worker.stop()
        api.stop()


@pytest.fixture(scope="session")
def pooled_url(request: pytest.FixtureRequest, pg_url: str) -> str | None:
    """The farm's database_url through PgBouncer when FARM_TEST_VIA_PGBOUNCER=1."""
    if not VIA_PGBOUNCER:
        return None
    bouncer: PgBouncer = request.getfixturevalue("bouncer")
    return bouncer.url_for(pg_url)


@pytest.fixture(scope="module")
def farm(
    pg_url: str,
    pooled_url: str | None,
    redis_url: str,
    strict_s3: S3Server,
    model_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Farm]:
    """A whole grid end to end, presigned URLs, the files routes: S3-facing, so on the
    signature-checking server."""
    with running_farm(
        pooled_url=pooled_url,
        pg_url=pg_url,
        redis_url=redis_url,
        s3=strict_s3,
        model_cache=model_cache,
        data_dir=tmp_path_factory.mktemp("farm"),
    ) as farm:
        yield farm


CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make browser` installs it)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
