"""Campaigns for real, a short smoke test: two `farm beat` processes, `farm api`, a
`farm worker` (simulated model), Postgres, Redis, S3, and a webhook receiver on loopback.

Cron's finest tick is a minute: the test waits for the next minute boundary (a minute at
most) and checks that the two beats fire that tick exactly once, that its job renders and
its run is settled, and that the webhook arrives signed. The policies (overlap, catch-up,
coalescing, pause, trigger, backfill, passes racing at one instant) are covered with a
controllable clock: tests/unit/test_campaign_scheduler.py and test_campaign_api.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.campaign_tables import Campaign, CampaignRun
from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.domain.webhook_signing import verify
from models.infra.settings import normalize_database_url
from tests.conftest import TEST_MODELS
from tests.integration.conftest import farm_env
from tests.s3_servers import S3Server
from tests.services import FarmProcess, free_port, wait_http_ok
from tests.webhook_receiver import Receiver, serve_receiver

pytestmark = pytest.mark.slow

SPEC = {"prompts": ["1girl, solo"], "seeds": [1, 2], "steps": 2, "model": "simulated"}
BEAT_ENV = {
    "FARM_BEAT_INTERVAL_S": "0.5",
    "FARM_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on loopback
    "FARM_WEBHOOK_BACKOFF_BASE_S": "0.2",
    "FARM_WEBHOOK_TIMEOUT_S": "5",
}


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    with serve_receiver() as receiver:
        yield receiver


@dataclass
class CampaignFarm:
    api_url: str
    key: str
    sessions: sessionmaker[Session]
    beats: list[FarmProcess]
    worker: FarmProcess  # may still be starting: runs' jobs wait in the queue meanwhile


@pytest.fixture(scope="module")
def cfarm(
    pg_url: str, redis_url: str, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CampaignFarm]:
    """`farm api`, `farm worker --model simulated` and two `farm beat`, started side by side.

    Ready when the API and both beats are: the worker's start (the slowest) overlaps the
    test's two minutes, and the jobs it makes meanwhile wait in the queue.
    """
    data_dir = tmp_path_factory.mktemp("campaigns")
    env = farm_env(
        pg_url=pg_url,
        redis_url=redis_url,
        s3=s3,
        data_dir=data_dir,
        model_cache=data_dir / "models",  # the simulated model needs no weights
        prefix=f"it-{uuid.uuid4().hex[:8]}",
        models=dict(TEST_MODELS),
    )
    env.update(BEAT_ENV)
    engine = make_engine(normalize_database_url(pg_url))
    with make_session_factory(engine).begin() as session:
        key = create_api_key(session, tenant_name=f"campaigns-{uuid.uuid4().hex[:6]}")
    port = free_port()
    api = FarmProcess(["api", "--port", str(port)], env).start()
    worker = FarmProcess(["worker", "--model", "simulated"], env).start()
    beats = [FarmProcess(["beat"], env).start() for _ in range(2)]
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        for beat in beats:
            beat.wait_for_line("beat ready", timeout_s=60)
        yield CampaignFarm(
            f"http://127.0.0.1:{port}", key, make_session_factory(engine), beats, worker
        )
    finally:
        for process in [*beats, worker, api]:
            process.stop()
        engine.dispose()


def wait_until(what: str, predicate: Callable[[], Any], timeout_s: float) -> Any:
    """Poll until ``predicate`` is truthy; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


def test_two_beats_fire_a_tick_exactly_once_and_its_webhook_arrives_signed(
    cfarm: CampaignFarm, hooks: Receiver
) -> None:
    api = httpx.Client(
        base_url=cfarm.api_url, headers={"Authorization": f"Bearer {cfarm.key}"}, timeout=30
    )
    body = {"name": "every minute", "schedule": "* * * * *", "spec": SPEC}
    created = api.post("/v1/campaigns", json={**body, "webhook_url": hooks.url("/farm")})
    assert created.status_code == 201, created.text
    campaign = created.json()
    url = f"/v1/campaigns/{campaign['id']}"

    def runs() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = api.get(f"{url}/runs?limit=1000").json()["items"]
        return items[::-1]  # oldest first

    def settled() -> bool:
        with cfarm.sessions() as session:
            statuses = session.scalars(
                select(CampaignRun.status).where(CampaignRun.campaign_id == campaign["id"])
            ).all()
        return bool(statuses) and all(s == "succeeded" for s in statuses)

    try:
        # 1. The next minute boundary fires once, whichever beat takes it; then pause, so
        #    that no later tick adds runs while the job renders.
        first_tick = datetime.fromisoformat(campaign["next_fire_at"])
        created_at = datetime.fromisoformat(campaign["created_at"])
        assert first_tick == created_at.replace(second=0, microsecond=0) + timedelta(minutes=1)
        wait_until("the first tick's run", runs, timeout_s=150)
        paused = api.patch(url, json={"enabled": False}).json()
        assert (paused["state"], paused["next_fire_at"]) == ("paused", None)

        # 2. The worker renders the job; a beat settles the run and sends the webhook.
        cfarm.worker.wait_for_line("ready.", timeout_s=120)
        wait_until("every run to succeed", settled, timeout_s=120)
        fired = runs()
        wait_until("the webhooks", lambda: len(hooks.on("/farm")) >= len(fired), timeout_s=60)
        secret = api.get("/v1/webhooks/secret").json()["secret"]
    finally:
        api.close()
        with cfarm.sessions.begin() as session:
            session.execute(delete(Campaign).where(Campaign.id == uuid.UUID(campaign["id"])))

    # Exactly once: one run per tick, each recorded by exactly one of the two beats.
    ticks = [datetime.fromisoformat(r["scheduled_for"]) for r in fired]
    assert ticks[0] == first_tick and ticks == sorted(set(ticks))
    assert all(t - first_tick == timedelta(minutes=i) for i, t in enumerate(ticks))
    assert all(r["origin"] == "schedule" and r["outcome"]["done"] == 2 for r in fired)
    logs = "".join(beat.output() for beat in cfarm.beats)
    for run in fired:
        assert logs.count(f"run {run['id']} started") == 1
    assert "pass failed" not in logs

    # The webhook: one job.completed per run's job, signed with the tenant's secret.
    events = {}
    for request in hooks.on("/farm"):
        signature = request.headers["Farm-Signature"]
        assert verify(secret, signature, request.body, now=time.time(), tolerance_s=600)
        event = json.loads(request.body)
        events[event["data"]["job"]["id"]] = event
    assert set(events) == {r["job_id"] for r in fired}
    for run in fired:
        event = events[run["job_id"]]
        assert event["type"] == "job.completed" and event["data"]["job"]["status"] == "succeeded"
        made_by = event["data"]["campaign"]
        assert (made_by["id"], made_by["run_id"]) == (campaign["id"], run["id"])
        assert datetime.fromisoformat(made_by["scheduled_for"]) == ticks[fired.index(run)]
