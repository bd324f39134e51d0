"""Metrics and logs of real `farm api` and `farm worker` processes after a small job."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from api.metrics import CACHE_S
from models.db.farm_metrics import read_snapshot
from models.db.tables import Item, Shard
from models.domain.status import CellStatus, ShardStatus
from tests.conftest import TEST_MODELS
from tests.integration.conftest import Farm, running_farm
from tests.s3_servers import S3Server
from tests.services import FarmProcess, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
# A model of this module's own: its worker claims no shard another module left behind,
# so every count below moves by this module's jobs alone.
MODEL = "observed-sim"
GRID = {"name": "metrics", "prompts": ["1girl, solo"], "seeds": [1, 2], "model": MODEL}


@pytest.fixture(scope="module")
def observed(
    pg_url: str,
    redis_url: str,
    s3: S3Server,
    model_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Farm, str]]:
    """A farm whose worker logs JSON and serves metrics on a port of its own."""
    port = free_port()
    with running_farm(
        pg_url=pg_url,
        redis_url=redis_url,
        s3=s3,
        model_cache=model_cache,
        data_dir=tmp_path_factory.mktemp("observed"),
        models={**TEST_MODELS, MODEL: "simulated:0.05"},
        extra_env={"FARM_METRICS_PORT": str(port), "FARM_LOG_FORMAT": "json"},
        worker_model=MODEL,
    ) as farm:
        yield farm, f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(url: str, done: Any, timeout_s: float) -> Samples:
    """Scrape until ``done(samples)``: the worker counts just after the commit the
    client sees, and the API's gauges are cached for CACHE_S."""
    deadline = time.monotonic() + timeout_s
    while not done(found := scrape(url)):
        assert time.monotonic() < deadline, f"{url} did not move in {timeout_s} s"
        time.sleep(0.25)
    return found


def run_job(farm: Farm, spec: dict[str, Any]) -> str:
    with farm.client() as client:
        job = client.submit(spec)
        final = client.wait(job["id"], poll_s=0.2, timeout_s=300)
    assert final["status"] == "succeeded", final
    return str(job["id"])


def test_a_job_moves_the_api_and_worker_metrics(observed: tuple[Farm, str]) -> None:
    farm, worker_url = observed
    api_url = f"{farm.api_url}/metrics"
    with farm.sessions() as sessions, sessions() as session:
        cells_before = read_snapshot(session, models=[MODEL]).cells
    worker_before = scrape(worker_url)
    run_job(farm, GRID)

    def worker_moved(name: str, found: Samples, **labels: str) -> float:
        return value(found, name, **labels) - value(worker_before, name, **labels)

    worker = scrape_until(
        worker_url, lambda s: worker_moved("farm_jobs_total", s, status="succeeded") == 1, 10
    )
    assert worker_moved("farm_images_total", worker, model=MODEL, bucket="1024x1024") == 2
    assert worker_moved("farm_render_seconds_count", worker, bucket="1024x1024") == 1
    assert worker_moved("farm_render_seconds_sum", worker, bucket="1024x1024") >= 0.1
    assert worker_moved("farm_upload_seconds_count", worker) == 2
    assert worker_moved("farm_job_latency_seconds_count", worker) == 1
    assert not any(name == "farm_gpu_memory_bytes" for name, _ in worker)  # no CUDA here

    # The first scrape of this API process reads Postgres; a later one may wait out the cache.
    done = cells_before["done"] + 2
    api = scrape_until(
        api_url, lambda s: value(s, "farm_cells", status="done") == done, CACHE_S + 5
    )
    # The gauges come from job counters; the slow, exact count over cells must agree.
    with farm.sessions() as sessions, sessions() as session:
        cells = dict(session.execute(select(Item.status, func.count()).group_by(Item.status)).all())
        queued_shards = session.scalar(
            select(func.count()).where(Shard.model == MODEL, Shard.status == ShardStatus.QUEUED)
        )
    # Done cells whose files expired since (retention) were done all the same.
    done_ever = cells[CellStatus.DONE] + cells.get(CellStatus.EXPIRED, 0)
    assert value(api, "farm_cells", status="done") == done_ever
    queued, running = (value(api, "farm_cells", status=s) for s in ("queued", "running"))
    assert queued + running == cells.get(CellStatus.QUEUED, 0)  # a claimed cell is still queued
    assert value(api, "farm_queue_depth", model=MODEL) == queued_shards == 0
    # With a broker the API renders nothing: the worker's counters are on the worker only.
    assert not any(name.startswith("farm_images") for name, _ in api)


def json_lines(process: FarmProcess) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as one JSON object."""
    return [json.loads(line) for line in process.output().splitlines() if line.strip()]


def test_service_logs_are_json_lines_with_the_job_id(observed: tuple[Farm, str]) -> None:
    farm, _ = observed
    job_id = run_job(farm, {**GRID, "seeds": [3]})
    [worker] = farm.workers
    worker.wait_for_line(f"job {job_id} succeeded", timeout_s=10)

    records = json_lines(worker)
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    assert any(r["msg"].endswith(" ready.") for r in records)  # Celery's own lines too
    mine = [r for r in records if r.get("job_id") == job_id]
    shard_lines = [r for r in mine if "shard_id" in r]
    assert shard_lines and all(r["cells"] == [0] for r in shard_lines)
    assert any(r["msg"] == f"job {job_id} succeeded" for r in mine)

    requests = [r for r in json_lines(farm.api) if r["logger"] == "api.requests"]
    submitted = [r for r in requests if r["method"] == "POST" and r.get("job_id") == job_id]
    polled = [r for r in requests if r["path"] == f"/v1/jobs/{job_id}"]
    assert [r["status"] for r in submitted] == [201]
    assert polled and all(r["job_id"] == job_id for r in polled)
