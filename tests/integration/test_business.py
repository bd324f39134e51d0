"""Running it as a business, on real processes: `farm api`, two `farm worker`s (the tiny
SDXL and a simulated model, both screening with a tiny classifier) and `farm beat`, on
real Postgres, Redis and S3.

- the ledger equals the render time the worker measured (within 5%); a job with a GPU
  budget stops at it;
- a job paused mid-render: no new cell starts after the shards in flight; resume
  finishes it, every cell rendered once; a receiver verifies every webhook (paused,
  resumed, progress, completed) with the ``standardwebhooks`` package;
- a held image is absent from the images API and the gallery until an operator
  releases it;
- a job with a 2-second retention loses its objects; nothing of another job is touched.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from farm.client import FarmClient
from models.db.keys import create_api_key
from models.db.tables import Item, Shard
from models.infra.storage import job_folder
from tests.business import OPERATOR, OPERATOR_KEY, bucket_keys
from tests.integration.conftest import Farm, running_farm
from tests.integration.test_metrics import scrape, value
from tests.s3_servers import S3Server
from tests.services import FarmProcess, free_port
from tests.webhook_receiver import Receiver, serve_receiver

pytestmark = pytest.mark.slow

TINY = "biz-tiny"  # models of this module's own: its workers take no other module's work
SIM = "biz-sim"
MODELS = {TINY: "tiny-sdxl", SIM: "simulated:0.4"}


@dataclass
class Business:
    farm: Farm
    metrics_url: str  # the tiny model's worker
    receiver: Receiver


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.2)
    return found


@pytest.fixture(scope="module")
def business(
    pg_url: str,
    redis_url: str,
    s3: S3Server,
    model_cache: Path,
    tiny_classifier: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Business]:
    port = free_port()
    env = {
        "FARM_ADMIN_KEYS": OPERATOR_KEY,
        "FARM_SCREENING_MODEL": str(tiny_classifier),
        "FARM_BATCH_SIZE": "1",
        "FARM_RETENTION_SWEEP_INTERVAL_S": "0.5",
        "FARM_STORAGE_DELETE_GRACE_S": "1",
        "FARM_ARTIFACT_REFRESH_S": "0.5",
        "FARM_WEBHOOK_ALLOW_PRIVATE": "true",
        "FARM_WEBHOOK_PROGRESS_MIN_INTERVAL_S": "0",
        "FARM_BEAT_INTERVAL_S": "0.5",
        "FARM_METRICS_PORT": str(port),
    }
    with (
        serve_receiver() as receiver,
        running_farm(
            pg_url=pg_url,
            redis_url=redis_url,
            s3=s3,
            model_cache=model_cache,
            data_dir=tmp_path_factory.mktemp("business"),
            models=MODELS,
            extra_env=env,
            worker_model=TINY,
        ) as farm,
    ):
        simulated = FarmProcess(
            ["worker", "--model", SIM], {**farm.env, "FARM_METRICS_PORT": "0"}
        ).start()
        beat = FarmProcess(["beat"], farm.env).start()
        try:
            simulated.wait_for_line("ready.", timeout_s=180)
            beat.wait_for_line("beat ready", timeout_s=60)
            yield Business(farm, f"http://127.0.0.1:{port}/metrics", receiver)
        finally:
            beat.stop()
            simulated.stop()


def _wait_done(client: FarmClient, job_id: str) -> dict[str, Any]:
    return client.wait(job_id, poll_s=0.2, timeout_s=240)


def test_the_ledger_matches_the_measured_render_time(business: Business) -> None:
    farm = business.farm
    with farm.client() as client:
        job = client.submit(
            {"prompts": ["1girl, solo", "1boy"], "seeds": [1, 2], "steps": 4, "model": TINY}
        )
        assert _wait_done(client, job["id"])["status"] == "succeeded"
        usage = client.usage(group_by="model")
    measured = wait_for(
        lambda: value(scrape(business.metrics_url), "farm_images_total", model=TINY,
                      bucket="1024x1024") >= 4 and scrape(business.metrics_url),
        "the worker's metrics",
    )  # fmt: skip
    render_s = sum(v for (name, _), v in measured.items() if name == "farm_render_seconds_sum")
    [row] = [i for i in usage["items"] if i["key"] == TINY]
    assert row["cells"] == 4 and row["devices"] == ["cpu"]
    assert render_s > 0 and abs(row["gpu_seconds"] - render_s) <= 0.05 * render_s, (
        row,
        render_s,
    )


def test_a_job_stops_at_its_gpu_budget(business: Business) -> None:
    with business.farm.client() as client:
        job = client.submit(
            {"prompts": ["1girl"], "seeds": list(range(10)), "model": SIM, "max_gpu_seconds": 1.0}
        )
        final = _wait_done(client, job["id"])
    assert final["status"] == "partial" and "GPU budget" in final["error"]
    # Shards of 0.4 s: the third reaches 1 s; the ones already in flight finish.
    assert 3 <= final["done"] <= 5 and final["done"] + final["failed"] == 10
    assert final["gpu_seconds"] >= 1.0


def _verified(secret: str, business: Business, path: str) -> list[str]:
    events = []
    for request in business.receiver.on(path):
        body = Webhook(secret).verify(request.body, request.headers)  # raises if forged
        events.append(body["type"])
    return events


def test_pause_mid_job_then_resume_every_cell_once(business: Business) -> None:
    farm = business.farm
    hook = business.receiver.url("/paused-job")
    with farm.client() as client:
        job = client.submit(
            {
                "prompts": ["1girl"],
                "seeds": list(range(6)),
                "model": SIM,
                "webhook_url": hook,
                "webhook_progress": {"every_percent": 50},
            }
        )
        wait_for(lambda: client.job(job["id"])["done"] >= 1, "a first image")
        paused = client.pause(job["id"])
        assert paused["paused"] is True
        job_id = uuid.UUID(job["id"])

        def settled() -> list[str] | None:  # the shards in flight have finished
            with farm.sessions() as sessions, sessions() as session:
                statuses = list(session.scalars(select(Shard.status).where(Shard.job_id == job_id)))
            return None if "running" in statuses else statuses

        statuses = wait_for(settled, "the shards in flight to finish")
        view = client.job(job["id"])
        assert view["status"] == "running" and view["paused"] is True and view["done"] < 6
        assert statuses.count("done") == view["done"]
        assert statuses.count("paused") == 6 - view["done"]  # no new cell started
        with farm.sessions() as sessions, sessions() as session:
            tried = session.scalars(
                select(Item.attempts).where(Item.job_id == job_id, Item.status == "queued")
            ).all()
        assert set(tried) == {0}

        client.resume(job["id"])
        final = _wait_done(client, job["id"])
        auth = {"Authorization": f"Bearer {farm.key}"}
        secret = httpx.get(f"{farm.api_url}/v1/webhooks/secret", headers=auth).json()["secret"]
    assert (final["status"], final["done"]) == ("succeeded", 6)
    with farm.sessions() as sessions, sessions() as session:
        attempts = session.scalars(select(Item.attempts).where(Item.job_id == job_id)).all()
    assert attempts == [1] * 6  # every cell rendered once
    events = wait_for(
        lambda: "job.completed" in (got := _verified(secret, business, "/paused-job")) and got,
        "the webhooks",
    )
    assert events[0] == "job.paused" and "job.resumed" in events and events[-1] == "job.completed"
    assert events.count("job.progress") >= 1


def test_a_held_image_stays_hidden_until_released(business: Business) -> None:
    farm = business.farm
    name = f"screened-{uuid.uuid4().hex[:6]}"
    with farm.sessions() as sessions, sessions.begin() as session:
        key = create_api_key(session, tenant_name=name)
    policy = httpx.put(
        f"{farm.api_url}/v1/admin/tenants/{name}/policy",
        json={"screening_threshold": 0.5},
        headers=OPERATOR,
    )
    assert policy.status_code == 200, policy.text
    with FarmClient(farm.api_url, key) as client:
        job = client.submit({"prompts": ["1girl"], "seeds": [0, 1], "model": SIM})
        final = _wait_done(client, job["id"])
        assert (final["done"], final["held"]) == (2, 1)
        assert [c["seed"] for c in client.images(job["id"])] == [1]  # seed 0 is held
        gallery_link = final["links"]["gallery"]
        gallery = client.file(client.wait_for_file(gallery_link))
        assert b"_s0." not in gallery and b"_s1." in gallery
        released = httpx.post(
            f"{farm.api_url}/v1/admin/jobs/{job['id']}/cells/0/release", headers=OPERATOR
        )
        assert released.status_code == 200, released.text
        assert [c["seed"] for c in client.images(job["id"])] == [0, 1]
        wait_for(lambda: b"_s0." in client.file(gallery_link), "the redrawn gallery")


def test_a_two_second_retention_removes_the_job_objects(business: Business) -> None:
    farm = business.farm
    with farm.client() as client:
        brief = client.submit({"prompts": ["1girl"], "seeds": [5], "model": SIM, "retention_s": 2})
        kept = client.submit({"prompts": ["1girl"], "seeds": [6], "model": SIM})
        for job in (brief, kept):
            done = _wait_done(client, job["id"])
            client.wait_for_file(done["links"]["manifest"])

    def folder(job: dict[str, Any]) -> str:
        with farm.sessions() as sessions, sessions() as session:
            owner = session.scalar(
                select(Shard.tenant_id).where(Shard.job_id == uuid.UUID(job["id"]))
            )
        assert owner is not None
        return job_folder(
            prefix=farm.settings.s3_prefix, tenant_id=owner, job_id=uuid.UUID(job["id"])
        )

    kept_objects = wait_for(lambda: bucket_keys(farm.settings, folder(kept) + "/"), "kept files")
    with farm.client() as client:
        view = wait_for(
            lambda: (v := client.job(brief["id"]))["expired_at"] and v["removed_objects"] and v,
            "the expiry",
        )
        assert view["removed_objects"] >= 3  # the image, its thumbnail, the sheet, ...
        assert [c["status"] for c in client.images(brief["id"])] == ["expired"]
    wait_for(lambda: bucket_keys(farm.settings, folder(brief) + "/") == [], "an empty folder")
    assert bucket_keys(farm.settings, folder(kept) + "/") == kept_objects  # untouched
