"""The farm through a real PgBouncer in transaction mode (tests/pgbouncer.py): a poll
storm from several tenants, two API processes' worth of poll pools sharing four server
connections. Before prepared statements went off behind the pooler, 37-70% of these
polls answered 500 ("prepared statement _pg3_N does not exist / already exists") and
a statement-name clash could run another client's query (a valid key got a 401)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from farm.stack import serve_in_thread
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from tests.conftest import TEST_MODELS
from tests.pgbouncer import PgBouncer
from tests.services import free_port

TENANTS = 4
POLLS = 600
CONCURRENCY = 48


@pytest.fixture
def pooled_apis(pg_url: str, bouncer: PgBouncer, tmp_path: Path) -> Iterator[list[str]]:
    """Two API servers whose database_url goes through PgBouncer."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=bouncer.url_for(pg_url),
        db_transaction_pooler=True,
        broker_url="",
        model="tiny-sdxl",
        models=dict(TEST_MODELS),
        api_key_cache_s=0,  # every poll looks its key up: the statement that clashed
        rate_limit_per_s=0,
    )
    with ExitStack() as stack:
        urls = [
            stack.enter_context(
                serve_in_thread(
                    create_app(settings, publisher=LocalPublisher()),
                    host="127.0.0.1",
                    port=free_port(),
                )
            )
            for _ in range(2)
        ]
        yield urls


def _tenants(pg_url: str) -> list[str]:
    from models.db.keys import create_api_key
    from models.db.session import make_engine, make_session_factory
    from models.infra.settings import normalize_database_url

    engine = make_engine(normalize_database_url(pg_url))
    try:
        with make_session_factory(engine).begin() as session:
            return [
                create_api_key(session, tenant_name=f"storm-{uuid.uuid4().hex[:8]}")
                for _ in range(TENANTS)
            ]
    finally:
        engine.dispose()


async def _storm(urls: list[str], keys: list[str]) -> tuple[Counter[int], list[str]]:
    async with httpx.AsyncClient(timeout=60) as client:
        jobs: list[str] = []
        for i, key in enumerate(keys):  # each tenant submits one job, through the pooler
            answer = await client.post(
                f"{urls[i % 2]}/v1/jobs",
                json={"prompts": [f"tenant {i}"], "seeds": [i], "model": "simulated"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 201, answer.text
            jobs.append(answer.json()["id"])
        statuses: Counter[int] = Counter()
        wrong: list[str] = []
        gate = asyncio.Semaphore(CONCURRENCY)

        async def poll(n: int) -> None:
            asker, target = n % TENANTS, (n // TENANTS) % TENANTS
            async with gate:
                answer = await client.get(
                    f"{urls[n % 2]}/v1/jobs/{jobs[target]}",
                    headers={"Authorization": f"Bearer {keys[asker]}"},
                )
            statuses[answer.status_code] += 1
            # Its own job: 200 with that job; another tenant's: 404, never its data.
            expected = 200 if asker == target else 404
            if answer.status_code != expected or (
                expected == 200 and answer.json()["id"] != jobs[target]
            ):
                wrong.append(f"{n}: {answer.status_code} {answer.text[:200]}")

        await asyncio.gather(*(poll(n) for n in range(POLLS)))
        return statuses, wrong


def test_poll_storm_through_pgbouncer(
    pooled_apis: list[str], pg_url: str, bouncer: PgBouncer
) -> None:
    statuses, wrong = asyncio.run(_storm(pooled_apis, _tenants(pg_url)))
    assert sum(statuses.values()) == POLLS
    assert wrong == [], (statuses, wrong[:5])
    assert set(statuses) == {200, 404}
    # The polls really shared PgBouncer's few server connections.
    [pool] = [p for p in bouncer.show("POOLS") if p["database"] == pg_url.rsplit("/", 1)[1]]
    assert int(str(pool["sv_idle"])) + int(str(pool["sv_used"])) <= 4
