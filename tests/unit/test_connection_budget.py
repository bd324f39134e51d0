"""The connection budget: pool sizes per process kind, no pre-ping on the worker's hot
paths, and a dropped connection costing a retry, not a failed claim, finish or poll."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.fast_poll import POLL_APPLICATION_NAME
from models.db.claims import ClaimedShard, claim_next_shard
from models.db.finish import finish_attempt
from models.db.session import make_engine, make_session_factory, retry_on_disconnect
from models.infra.settings import Settings, normalize_database_url
from tests.conftest import ApiClient
from tests.services import PG_ADMIN_URL
from tests.unit.test_shard_store import make_job, new_model, results_for

T = TypeVar("T")


def terminate(application_name: str, database: str = "%") -> int:
    """pg_terminate_backend of every connection with that name (in that database):
    what a Postgres restart or a failover does to a pool, without disturbing others."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname LIKE %s",
            (application_name, database),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def worker_engine(settings: Settings) -> Iterator[tuple[Engine, str]]:
    name = f"budget-{uuid.uuid4().hex[:8]}"
    engine = make_engine(
        settings.sqlalchemy_url,
        **settings.engine_kwargs("worker"),
        connect_args={"application_name": name},
    )
    yield engine, name
    engine.dispose()


def counted(work: Callable[[], T], calls: list[int]) -> Callable[[], T]:
    def run() -> T:
        calls.append(1)
        return work()

    return run


def test_worker_pool_is_small_and_pings_nothing(settings: Settings) -> None:
    kwargs = settings.engine_kwargs("worker")
    assert kwargs["pool_size"] <= 2 and kwargs["pre_ping"] is False
    engine = make_engine(settings.sqlalchemy_url, **kwargs)
    try:
        assert engine.pool.size() == kwargs["pool_size"]  # type: ignore[attr-defined]
        assert engine.pool._pre_ping is False
    finally:
        engine.dispose()
    pooled = Settings(database_url=settings.database_url, db_transaction_pooler=True)
    assert pooled.engine_kwargs("worker")["prepared_statements"] is False
    assert pooled.migration_url("app") == "app"
    direct = Settings(migration_database_url="postgresql://pg/farm")
    assert direct.migration_url("app") == normalize_database_url("postgresql://pg/farm")


def test_claim_and_finish_survive_terminated_connections(
    worker_engine: tuple[Engine, str], sessions: sessionmaker[Session]
) -> None:
    engine, name = worker_engine
    pool: sessionmaker[Session] = make_session_factory(engine)
    model = new_model()
    make_job(sessions, model, cells=8)

    def claim() -> ClaimedShard | None:
        with pool.begin() as session:
            return claim_next_shard(session, model=model, worker="w1", lease_s=60)

    assert retry_on_disconnect(claim) is not None  # the pool now holds a connection
    assert terminate(name) >= 1
    calls: list[int] = []
    shard = retry_on_disconnect(counted(claim, calls))
    assert shard is not None and len(calls) == 2  # the dead connection failed once

    results = results_for(sessions, shard)
    assert terminate(name) >= 1

    def finish() -> int:
        with pool.begin() as session:
            done = finish_attempt(
                session,
                shard=shard,
                worker="w1",
                results=results,
                failures=[],
                max_attempts=3,
                backoff_s=1,
            )
            return done.recorded

    calls.clear()
    assert retry_on_disconnect(counted(finish, calls)) == len(results) > 0
    assert len(calls) == 2


def test_other_errors_are_not_retried(worker_engine: tuple[Engine, str]) -> None:
    engine, _ = worker_engine
    calls: list[int] = []

    def bad() -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT no_such_column FROM pg_class")

    with pytest.raises(Exception, match="no_such_column"):
        retry_on_disconnect(counted(bad, calls))
    assert len(calls) == 1


def test_polls_survive_terminated_connections(api: ApiClient) -> None:
    job = api.client.post("/v1/jobs", json={"prompts": ["a"], "seeds": [1]}, headers=api.auth)
    assert job.status_code in (200, 201, 202), job.text
    url = f"/v1/jobs/{job.json()['id']}"
    assert api.client.get(url, headers=api.auth).status_code == 200
    database = api.settings.database_url.rsplit("/", 1)[-1]
    assert terminate(POLL_APPLICATION_NAME, database) >= 1
    for _ in range(3):  # every pooled connection is dead: none of it shows
        assert api.client.get(url, headers=api.auth).status_code == 200
