"""Shared fixtures: real Postgres, Redis, S3 (moto, or SeaweedFS for the S3-facing tests) and the
tiny SDXL model."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from migrations.apply import upgrade
from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings, normalize_database_url
from tests.pgbouncer import PgBouncer, pgbouncer
from tests.s3_servers import SERVERS, S3Server, chosen_server, moto_s3, seaweedfs_s3
from tests.services import postgres_database, redis_database

if TYPE_CHECKING:
    from tests.tiers import CompiledTier

# Credentials come from the S3 fixtures (tests/s3_servers.py), never from here.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

TEST_MODELS = {"tiny-sdxl": "tiny-sdxl", "simulated": "simulated:0.01"}


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        upgrade(normalize_database_url(url))
        yield url


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--s3",
        choices=SERVERS,
        default=None,
        help="S3 server of the S3-facing tests (strict_s3); default FARM_TEST_S3 or seaweedfs",
    )


@pytest.fixture(scope="session")
def bouncer(pg_url: str) -> Iterator[PgBouncer]:
    """A real PgBouncer in transaction mode in front of the test database. Its pool is
    smaller than the clients' so that server connections are shared, as in production."""
    with pgbouncer(pg_url, pool_size=4) as running:
        yield running


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto: fast, for tests where signatures do not matter."""
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS's S3 gateway, whatever ``--s3`` says: for the tests of what only a
    signature-checking server does (a wrong secret refused)."""
    with seaweedfs_s3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def strict_s3(request: pytest.FixtureRequest) -> Iterator[S3Server]:
    """The S3-facing tests' server: SeaweedFS, which checks signatures, unless
    ``--s3=moto`` / ``FARM_TEST_S3=moto``."""
    if chosen_server(request.config.getoption("--s3")) == "moto":
        with moto_s3() as moto:
            yield moto
        return
    weed: S3Server = request.getfixturevalue("seaweedfs")  # one weed per run, shared
    yield weed


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_database() as url:
        yield url


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the cold compiles the selected tests need (tests/cold_compiles.py says why)."""
    from tests.cold_compiles import BACKGROUND, PROBE_TEST, STANDARD_FIXTURE, start

    want_standard = any(STANDARD_FIXTURE in getattr(i, "fixturenames", ()) for i in session.items)
    want_probe = any(item.nodeid == PROBE_TEST for item in session.items)
    if want_standard or want_probe:
        background = start(want_standard=want_standard, want_probe=want_probe)
        session.config.stash[BACKGROUND] = background


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.cold_compiles import BACKGROUND

    background = session.config.stash.get(BACKGROUND, None)
    if background is not None:
        background.stop()


@pytest.fixture(scope="session")
def model_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model built once and saved; every process loads it from this folder
    (the background compiles' folder when the session started them: the same model)."""
    from tests.cold_compiles import BACKGROUND
    from worker.tiny_sdxl import ensure_tiny_sdxl

    background = request.config.stash.get(BACKGROUND, None)
    if background is not None:
        return background.model_cache
    cache = tmp_path_factory.mktemp("models")
    ensure_tiny_sdxl(cache / "tiny-sdxl")
    return cache


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny screening classifier saved like a Hub model (tests/tiny_classifier.py)."""
    from tests.tiny_classifier import build_tiny_classifier

    return build_tiny_classifier(tmp_path_factory.mktemp("classifier") / "tiny-nsfw")


@pytest.fixture(scope="session")
def tiny_scorer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny scorer (score = mean brightness) saved like a Hub model (tests/tiny_scorer.py)."""
    from tests.tiny_scorer import build_tiny_scorer

    return build_tiny_scorer(tmp_path_factory.mktemp("scorer") / "tiny-brightness")


@pytest.fixture
def settings(pg_url: str, s3: S3Server, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=pg_url,
        broker_url="",
        s3_endpoint_url=s3.endpoint_url,
        s3_bucket=s3.bucket,
        s3_prefix=f"t-{uuid.uuid4().hex[:8]}",
        s3_access_key_id=s3.access_key,
        s3_secret_access_key=s3.secret_key,
        model="tiny-sdxl",
        models=dict(TEST_MODELS),
        model_cache_dir=tmp_path / "models",
    )


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.sqlalchemy_url)
    yield make_session_factory(engine)
    engine.dispose()


@dataclass
class ApiClient:
    client: TestClient
    key: str
    publisher: LocalPublisher
    settings: Settings

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def api(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[ApiClient]:
    """The real app in-process (ASGI) on real Postgres; published shards are collected."""
    publisher = LocalPublisher()
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=f"tenant-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings, publisher=publisher)) as client:
        yield ApiClient(client, key, publisher, settings)


@pytest.fixture(scope="session")
def standard_tier_compiled(
    request: pytest.FixtureRequest, model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> CompiledTier:
    """The tiny model's standard tier compiled once per session (a cold compile takes
    minutes on 2 cores; the session started it in the background, tests/cold_compiles.py,
    and this compiles the same graphs from its cache): the switch tests check its
    pixels, and the device kit's CPU rehearsal compiles from its cache."""
    from tests.cold_compiles import BACKGROUND
    from tests.tiers import compile_standard_tier

    background = request.config.stash.get(BACKGROUND, None)
    if background is not None and background.has("standard"):
        done, job = background.result("standard")
        assert done.returncode == 0, done.stderr[-3000:]
        cache = job.cache_dir
    else:
        cache = tmp_path_factory.mktemp("inductor")
    return compile_standard_tier(model_cache / "tiny-sdxl", cache)
