"""A worker's metrics move as an in-process ShardRunner renders a job for real."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from models.db.jobs import NewJob, create_jobs
from models.db.keys import ensure_tenant
from models.db.tables import Job
from models.domain.spec import JobSpec
from models.infra.log_setup import ContextFilter, json_formatter
from models.infra.settings import Settings
from tests.services import free_port
from worker.metrics import (
    GpuMemoryCollector,
    gpu_memory_allocated,
    install_worker_metrics,
    serve_metrics,
)
from worker.runtime import build_runner, close_runner
from worker.shard_runner import Outcome

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
BUCKETS = ["1024x1024", "1216x832"]


def samples(registry: CollectorRegistry = REGISTRY) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def render_job(settings: Settings, sessions: sessionmaker[Session]) -> tuple[str, uuid.UUID]:
    """Queue 2 buckets x 3 seeds for a simulated model of this test's own, render it all."""
    model = f"sim-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"models": {model: "simulated:0.01"}, "model": model})
    spec = JobSpec.model_validate({"prompts": ["1girl"], "buckets": BUCKETS, "seeds": [1, 2, 3]})
    with sessions.begin() as session:
        tenant = ensure_tenant(session, name=f"wm-{uuid.uuid4().hex[:8]}")
        [created] = create_jobs(
            session, tenant_id=tenant.id, requests=[NewJob(spec)], default_model=model, batch_size=4
        )
    runner = build_runner(settings, warm_models=[model])
    try:
        while runner.run_next(model) is not Outcome.NOTHING:
            pass
        runner.drain()
    finally:
        close_runner(runner)
        runner.sessions.kw["bind"].dispose()  # the runner's own pool
    return model, created.job.id


def test_rendering_a_job_moves_the_worker_metrics(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    before = samples()
    model, job_id = render_job(settings, sessions)
    after = samples()

    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded"

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for bucket in BUCKETS:
        assert moved("farm_images_total", model=model, bucket=bucket) == 3
        assert moved("farm_render_seconds_count", bucket=bucket) == 1  # one call per shard
        assert moved("farm_render_seconds_sum", bucket=bucket) >= 0.03  # 3 images x 0.01 s
    assert moved("farm_upload_seconds_count") == 6
    assert moved("farm_jobs_total", status="succeeded") == 1
    assert moved("farm_job_latency_seconds_count") == 1
    assert 0 < moved("farm_job_latency_seconds_sum") < 120
    # Histogram buckets are cumulative: the +Inf bucket counts every observation.
    assert moved("farm_upload_seconds_bucket", le="+Inf") == 6


@pytest.fixture
def worker_log() -> Iterator[io.StringIO]:
    """The worker's records as JSON lines, the way `farm worker` writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("worker")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_worker_log_lines_name_the_job_and_shard(
    settings: Settings, sessions: sessionmaker[Session], worker_log: io.StringIO
) -> None:
    _, job_id = render_job(settings, sessions)
    lines = [json.loads(line) for line in worker_log.getvalue().splitlines()]
    recorded = [line for line in lines if "image(s) recorded" in line["msg"]]
    assert len(recorded) == 2  # one per shard
    for line in recorded:
        assert line["job_id"] == str(job_id)
        assert isinstance(line["shard_id"], int)
        assert len(line["cells"]) == 3
        assert line["level"] == "INFO" and line["logger"] == "worker.metrics" and line["ts"]
    [finished] = [line for line in lines if line["msg"] == f"job {job_id} succeeded"]
    assert finished["job_id"] == str(job_id) and finished["status"] == "succeeded"
    assert finished["latency_s"] > 0


def test_gpu_memory_is_read_per_device_at_scrape() -> None:
    registry = CollectorRegistry()
    registry.register(GpuMemoryCollector(lambda: {"cuda:1": 2048, "cuda:0": 1024}))
    found = samples(registry)
    assert value(found, "farm_gpu_memory_bytes", device="cuda:0") == 1024
    assert value(found, "farm_gpu_memory_bytes", device="cuda:1") == 2048

    empty = CollectorRegistry()
    empty.register(GpuMemoryCollector(dict))
    assert "farm_gpu_memory_bytes" not in generate_latest(empty).decode()


def test_gpu_memory_reading_matches_torch() -> None:
    import torch

    if not torch.cuda.is_available():
        assert gpu_memory_allocated() == {}  # absent on a CPU worker
        return
    block = torch.empty(64 * 1024 * 1024, dtype=torch.uint8, device="cuda:0")
    assert gpu_memory_allocated()["cuda:0"] >= block.numel()


def test_metrics_server_serves_and_survives_a_taken_port() -> None:
    install_worker_metrics()  # what a rendering process does at start (build_runner)
    port = free_port()
    server = serve_metrics(port)
    assert server is not None
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        families = {f.name for f in text_string_to_metric_families(response.text)}
        assert {"farm_upload_seconds", "farm_job_latency_seconds"} <= families
        assert serve_metrics(port) is None  # in use: logged, the worker goes on
    finally:
        server.shutdown()
        server.server_close()
    assert serve_metrics(0) is None
