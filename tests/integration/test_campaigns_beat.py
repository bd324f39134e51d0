"""Campaigns for real: two `farm beat` processes, `farm api`, a `farm worker` (simulated model),
Postgres, Redis, S3, and a webhook receiver on loopback.

One test, about two and a quarter minutes: cron's finest tick is a minute, and the beats
must run side by side for at least two of them. Campaign A fires every minute (and is
triggered once); campaign B fires once, is paused, and must not fire at the next minute.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.db.tables import Campaign, CampaignRun
from models.domain.webhook_signing import verify
from models.infra.settings import normalize_database_url
from tests.conftest import TEST_MODELS
from tests.integration.conftest import farm_env
from tests.services import FarmProcess, S3Server, free_port, wait_http_ok

pytestmark = pytest.mark.slow

BEATS_TOGETHER_S = 120  # the requirement: two beats side by side for at least two minutes
SPEC = {"prompts": ["1girl, solo"], "seeds": [1, 2], "steps": 2, "model": "simulated"}
BEAT_ENV = {
    "FARM_BEAT_INTERVAL_S": "0.5",
    "FARM_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on loopback
    "FARM_WEBHOOK_BACKOFF_BASE_S": "0.2",
    "FARM_WEBHOOK_TIMEOUT_S": "5",
}


@dataclass
class Hooks:
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    state = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/farm"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


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
        s3_endpoint_url=s3.endpoint_url,
        bucket=s3.bucket,
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


def wait_until(what: str, predicate: Any, timeout_s: float, poll_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


def minute_boundaries(after: datetime, until: datetime) -> list[datetime]:
    tick = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    ticks = []
    while tick <= until:
        ticks.append(tick)
        tick += timedelta(minutes=1)
    return ticks


def test_two_beats_fire_each_minute_once_pause_stops_and_trigger_runs_now(
    cfarm: CampaignFarm, hooks: Hooks
) -> None:
    together_since = time.monotonic()  # both beats are running (see the fixture)
    api = httpx.Client(
        base_url=cfarm.api_url, headers={"Authorization": f"Bearer {cfarm.key}"}, timeout=30
    )
    made: list[uuid.UUID] = []

    def create(name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "schedule": "* * * * *", "spec": SPEC, **fields}
        response = api.post("/v1/campaigns", json=body)
        assert response.status_code == 201, response.text
        made.append(uuid.UUID(response.json()["id"]))
        created: dict[str, Any] = response.json()
        return created

    def runs(campaign: dict[str, Any]) -> list[dict[str, Any]]:
        page = api.get(f"/v1/campaigns/{campaign['id']}/runs?limit=1000").json()
        items: list[dict[str, Any]] = page["items"]
        return items[::-1]  # oldest first

    def settled() -> bool:
        with cfarm.sessions() as session:
            statuses = session.scalars(
                select(CampaignRun.status).where(CampaignRun.campaign_id.in_(made))
            ).all()
        return bool(statuses) and all(s == "succeeded" for s in statuses)

    try:
        a = create("every minute", webhook_url=hooks.url)
        b = create("paused after one")

        # 1. B fires at its first minute; then it is paused.
        [b_first] = wait_until("B's first run", lambda: runs(b), timeout_s=75)
        paused = api.patch(f"/v1/campaigns/{b['id']}", json={"enabled": False}).json()
        assert (paused["state"], paused["next_fire_at"]) == ("paused", None)

        # 2. Run A now.
        manual = api.post(f"/v1/campaigns/{a['id']}/trigger", json={"overlap": "allow_all"})
        assert manual.status_code == 201, manual.text
        assert manual.json()["origin"] == "manual" and manual.json()["job_id"]

        # 3. Keep both beats running for two minutes and past B's next minute.
        b_next = datetime.fromisoformat(b_first["scheduled_for"]) + timedelta(minutes=1)
        wait_until(
            "two minutes of two beats",
            lambda: (
                time.monotonic() - together_since >= BEATS_TOGETHER_S
                and datetime.now(UTC) >= b_next + timedelta(seconds=3)
            ),
            timeout_s=BEATS_TOGETHER_S + 90,
        )
        if datetime.now(UTC).second >= 57:  # too close to a tick to tell fired from not yet
            time.sleep(5)
        seen_until = datetime.now(UTC)

        # 4. Every run's job completes; the beats settle the runs and send A's webhooks.
        cfarm.worker.wait_for_line("ready.", timeout_s=60)
        wait_until("every run to succeed", settled, timeout_s=60)
        a_runs, b_runs = runs(a), runs(b)
        wait_until("A's webhooks", lambda: len(hooks.received) >= len(a_runs), timeout_s=30)
        secret = api.get("/v1/webhooks/secret").json()["secret"]
    finally:
        api.close()
        with cfarm.sessions.begin() as session:
            session.execute(delete(Campaign).where(Campaign.id.in_(made)))

    # A: exactly one scheduled run per minute boundary, plus the manual one.
    expected = minute_boundaries(datetime.fromisoformat(a["created_at"]), seen_until)
    scheduled = [r for r in a_runs if r["origin"] == "schedule"]
    fired = [datetime.fromisoformat(r["scheduled_for"]) for r in scheduled]
    assert [t for t in fired if t <= seen_until] == expected
    assert len(expected) >= 2
    assert [r["origin"] for r in a_runs].count("manual") == 1
    assert all(r["status"] == "succeeded" and r["outcome"]["done"] == 2 for r in a_runs)
    assert len({r["job_id"] for r in a_runs}) == len(a_runs)

    # B: its first minute only; the next minute(s) passed while it was paused.
    assert [r["scheduled_for"] for r in b_runs] == [b_first["scheduled_for"]]

    # Each scheduled run was recorded by exactly one of the two beats.
    logs = "".join(beat.output() for beat in cfarm.beats)
    for run in scheduled:
        assert logs.count(f"run {run['id']} started") == 1

    # A's webhooks: one job.completed per job, signed with the tenant's secret.
    events = {}
    for headers, body in hooks.received:
        # signed at each attempt, minutes ago at most
        assert verify(secret, headers["Farm-Signature"], body, now=time.time(), tolerance_s=600)
        event = json.loads(body)
        events[event["data"]["job"]["id"]] = event
    assert set(events) == {r["job_id"] for r in a_runs}
    for run in a_runs:
        event = events[run["job_id"]]
        assert event["type"] == "job.completed" and event["data"]["job"]["status"] == "succeeded"
        campaign = event["data"]["campaign"]
        assert (campaign["id"], campaign["run_id"]) == (a["id"], run["id"])
        scheduled_for = datetime.fromisoformat(campaign["scheduled_for"])
        assert scheduled_for == datetime.fromisoformat(run["scheduled_for"])
