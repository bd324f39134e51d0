"""Nothing lost, nothing doubled: real processes, real faults.

One farm for the module: `farm api` and `farm worker` processes on real
Postgres and Redis, with S3 reached through a fault-injecting proxy. Leases,
heartbeats and the reconciler run on short intervals so faults heal quickly.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from farm.client import FarmClient
from models.db.tables import Item, Shard
from tests.conftest import TEST_MODELS
from tests.fault_proxy import FaultProxy
from tests.integration.conftest import Farm, running_farm
from tests.s3_servers import S3Server

pytestmark = pytest.mark.slow

MODELS = {**TEST_MODELS, "sim": "simulated:0.15", "slow": "simulated:3"}
FAST_HEALING = {
    "FARM_SHARD_LEASE_S": "3",
    "FARM_HEARTBEAT_S": "0.3",
    "FARM_RECONCILE_INTERVAL_S": "1",
    "FARM_RETRY_BACKOFF_S": "0.5",
    "FARM_MAX_ATTEMPTS": "6",
}


@pytest.fixture(scope="session")
def s3(strict_s3: S3Server) -> S3Server:
    """The faults that touch S3 run against the signature-checking server: the proxy
    must forward requests so that their signatures still hold."""
    return strict_s3


@pytest.fixture(scope="module")
def proxy(s3: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3.endpoint_url).running() as running:
        yield running


@pytest.fixture(scope="module")
def ffarm(
    pg_url: str,
    pooled_url: str | None,
    redis_url: str,
    s3: S3Server,
    proxy: FaultProxy,
    model_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Farm]:
    with running_farm(
        pooled_url=pooled_url,
        pg_url=pg_url,
        redis_url=redis_url,
        s3=s3,
        s3_endpoint_url=proxy.url,
        model_cache=model_cache,
        data_dir=tmp_path_factory.mktemp("faults"),
        models=MODELS,
        extra_env=FAST_HEALING,
        worker_model="sim",
    ) as farm:
        yield farm


def grid(cells: int, model: str = "sim") -> dict[str, Any]:
    return {
        "prompts": ["1girl, solo"],
        "buckets": ["640x1536"],
        "seeds": list(range(cells)),
        "model": model,
        "steps": 2,
    }


def wait_for(
    client: FarmClient, job_id: str, predicate: Any, timeout_s: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.job(job_id)
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"timed out; job is {job}"
        time.sleep(0.1)


def object_keys(s3: S3Server, farm: Farm, job_id: str) -> list[str]:
    client = s3.client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=s3.bucket, Prefix=f"{farm.settings.s3_prefix}/"
    ):
        keys += [
            o["Key"]
            for o in page.get("Contents", [])
            if f"/{job_id}/" in o["Key"]
            and o["Key"].endswith(".png")
            and "/thumbs/" not in o["Key"]
        ]
    return keys


def assert_exactly_once(s3: S3Server, farm: Farm, job: dict[str, Any]) -> None:
    """Every cell done once in the database, one object per cell in the bucket."""
    assert job["status"] == "succeeded", job
    assert job["done"] == job["total"]
    with farm.sessions() as sessions, sessions() as session:
        rows = session.execute(
            select(Item.status, func.count())
            .where(Item.job_id == uuid.UUID(job["id"]))
            .group_by(Item.status)
        ).all()
        keys = set(session.scalars(select(Item.key).where(Item.job_id == uuid.UUID(job["id"]))))
    assert dict(rows) == {"done": job["total"]}
    stored = object_keys(s3, farm, job["id"])
    assert len(stored) == job["total"] == len(set(stored))
    assert set(stored) == keys


def test_sigkill_of_one_of_two_workers_mid_job(ffarm: Farm, s3: S3Server) -> None:
    victim = ffarm.start_worker("sim")
    with ffarm.client() as client:
        job = client.submit(grid(40))
        wait_for(client, job["id"], lambda j: j["done"] >= 8)
        victim.kill()  # SIGKILL mid-render: it holds a leased shard
        ffarm.workers.remove(victim)
        final = wait_for(client, job["id"], lambda j: j["status"] != "running", 90)
    assert_exactly_once(s3, ffarm, final)


def test_redis_flush_mid_job(ffarm: Farm, s3: S3Server) -> None:
    with ffarm.client() as client:
        job = client.submit(grid(24))
        wait_for(client, job["id"], lambda j: j["done"] >= 4)
        with redis.Redis.from_url(ffarm.settings.broker_url) as broker:
            broker.flushdb()  # every queued token is gone
        final = wait_for(client, job["id"], lambda j: j["status"] != "running", 90)
    assert_exactly_once(s3, ffarm, final)


def test_storage_answering_503_for_a_while(ffarm: Farm, s3: S3Server, proxy: FaultProxy) -> None:
    with ffarm.client() as client:
        job = client.submit(grid(24))
        wait_for(client, job["id"], lambda j: j["done"] >= 4)
        refused_before = proxy.refused
        proxy.failing.set()
        # The outage lasts until uploads have been refused and retried a few times.
        deadline = time.monotonic() + 120
        while proxy.refused < refused_before + 6:
            assert time.monotonic() < deadline, "no upload reached the failing storage"
            time.sleep(0.05)
        during = client.job(job["id"])
        proxy.failing.clear()
        final = wait_for(client, job["id"], lambda j: j["status"] != "running", 120)
    assert during["done"] < 24  # the outage really stopped progress
    assert_exactly_once(s3, ffarm, final)


def test_postgres_restart_mid_job(ffarm: Farm, s3: S3Server) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    with ffarm.client() as client:
        job = client.submit(grid(24))
        wait_for(client, job["id"], lambda j: j["done"] >= 4)
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
            capture_output=True,
        )
        final = wait_for(client, job["id"], lambda j: j["status"] != "running", 120)
    assert_exactly_once(s3, ffarm, final)


def test_cancel_mid_render_stops_within_a_step(ffarm: Farm, s3: S3Server) -> None:
    slow = ffarm.start_worker("slow")  # 3 s per image: a shard renders for 12 s
    try:
        with ffarm.client() as client:
            job = client.submit(grid(8, model="slow"))
            wait_for(client, job["id"], lambda j: j["status"] == "running")
            client.cancel(job["id"])
            # "stopped shard ... mid-render" is logged only when the render itself is
            # interrupted (between steps), not when a finished render is thrown away.
            deadline = time.monotonic() + 60
            while "stopped shard" not in slow.output():
                assert time.monotonic() < deadline, slow.output()
                time.sleep(0.05)
            final = client.job(job["id"])
            with ffarm.sessions() as sessions, sessions() as session:
                running = session.scalar(
                    select(func.count())
                    .select_from(Shard)
                    .where(Shard.job_id == uuid.UUID(job["id"]), Shard.status == "running")
                )
        assert running == 0  # nothing of the job is still rendering: nothing can land
        assert object_keys(s3, ffarm, job["id"]) == []
        assert (final["status"], final["done"], final["cancelled"]) == ("cancelled", 0, 8)
    finally:
        ffarm.workers.remove(slow)
        slow.stop()


def test_sigterm_finishes_the_current_shard(ffarm: Farm, s3: S3Server) -> None:
    leaving = ffarm.start_worker("sim")
    with ffarm.client() as client:
        job = client.submit(grid(32))
        wait_for(client, job["id"], lambda j: j["done"] >= 4)
        assert leaving.stop(timeout_s=30) == 0
        ffarm.workers.remove(leaving)
        with ffarm.sessions() as sessions, sessions() as session:
            left_running = session.scalar(
                select(func.count())
                .select_from(Shard)
                .where(
                    Shard.job_id == uuid.UUID(job["id"]),
                    Shard.status == "running",
                    Shard.claimed_by.like(f"%:{leaving.proc.pid}"),
                )
            )
        assert left_running == 0  # it left nothing half-done behind
        final = wait_for(client, job["id"], lambda j: j["status"] != "running", 90)
    assert_exactly_once(s3, ffarm, final)


def test_high_priority_job_overtakes_a_big_bulk_job(ffarm: Farm) -> None:
    """Counted in work, not seconds: while the urgent job waits and renders, the bulk
    job may only finish what the worker already held (the shard rendering, the two the
    writer may hold, one claim racing the submission): 4 shards of 4 cells, against
    the ~2,000 cells ahead of it in a first-come queue."""
    with ffarm.client() as client:
        bulk = client.submit({**grid(2000), "priority": "bulk"})
        before = wait_for(client, bulk["id"], lambda j: j["done"] >= 8)
        urgent = client.submit({**grid(4), "priority": "high"})
        wait_for(client, urgent["id"], lambda j: j["status"] == "succeeded", 120)
        behind = client.job(bulk["id"])
        client.cancel(bulk["id"])
    assert behind["done"] - before["done"] <= 16, (before["done"], behind["done"])
