"""The API's /metrics: farm-wide gauges read from Postgres counters, cached, never fatal."""

from __future__ import annotations

import uuid

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from api.metrics import FarmGauges
from models.db.cell_rows import queued_cells
from models.db.claims import claim_next_shard
from models.db.farm_metrics import FarmSnapshot, read_snapshot
from models.db.finish import CellResult, finish_attempt
from models.db.jobs import NewJob, create_jobs
from models.db.keys import ensure_tenant
from models.db.session import make_engine, make_session_factory
from models.domain.spec import JobSpec
from tests.conftest import TEST_MODELS, ApiClient

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def gauge(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def snapshot(sessions: sessionmaker[Session], models: list[str]) -> FarmSnapshot:
    with sessions() as session:
        return read_snapshot(session, models=models)


def queue_job(sessions: sessionmaker[Session], model: str, cells: int) -> uuid.UUID:
    """A job of ``cells`` cells in shards of up to 4, for a model no other test uses."""
    spec = JobSpec.model_validate({"prompts": ["1girl"], "seeds": list(range(cells))})
    with sessions.begin() as session:
        tenant = ensure_tenant(session, name=f"metrics-{uuid.uuid4().hex[:8]}")
        [created] = create_jobs(
            session, tenant_id=tenant.id, requests=[NewJob(spec)], default_model=model, batch_size=4
        )
        return created.job.id


def test_metrics_endpoint_shows_a_submitted_job(api: ApiClient) -> None:
    sessions = api.client.app.state.farm.sessions  # type: ignore[attr-defined]
    before = snapshot(sessions, list(TEST_MODELS))
    body = {"prompts": ["1girl"], "seeds": [1, 2, 3, 4, 5, 6], "model": "simulated"}
    assert api.client.post("/v1/jobs", json=body, headers=api.auth).status_code == 201

    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)
    depth = before.queue_depth["simulated"] + 2  # 6 cells in shards of 4: two shards
    assert gauge(found, "farm_queue_depth", model="simulated") == depth
    assert gauge(found, "farm_queue_depth", model="tiny-sdxl") == before.queue_depth["tiny-sdxl"]
    assert gauge(found, "farm_cells", status="queued") == before.cells["queued"] + 6
    for status in ("running", "done", "failed", "cancelled"):
        assert gauge(found, "farm_cells", status=status) == before.cells[status]


def test_cells_follow_claims_and_results(sessions: sessionmaker[Session]) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    before = snapshot(sessions, [model])
    queue_job(sessions, model, cells=6)
    queued = snapshot(sessions, [model])
    assert queued.queue_depth == {model: 2}
    assert queued.cells["queued"] == before.cells["queued"] + 6

    with sessions.begin() as session:
        shard = claim_next_shard(session, model=model, worker="w-metrics", lease_s=60)
        assert shard is not None
        cells = queued_cells(session, job_id=shard.job_id, shard_index=shard.index)
    running = snapshot(sessions, [model])
    assert running.queue_depth == {model: 1}
    assert running.cells["running"] == before.cells["running"] + len(cells) == len(cells)
    assert running.cells["queued"] == queued.cells["queued"] - len(cells)

    results = [CellResult(c.index, f"k/{c.index}", "0" * 64, None, 5) for c in cells]
    with sessions.begin() as session:
        finish_attempt(
            session,
            shard=shard,
            worker="w-metrics",
            results=results,
            failures=[],
            max_attempts=3,
            backoff_s=1,
        )
    done = snapshot(sessions, [model])
    assert done.cells["running"] == 0
    assert done.cells["done"] == before.cells["done"] + len(cells)
    assert done.cells["queued"] == queued.cells["queued"] - len(cells)


def test_gauges_are_read_once_per_ttl(sessions: sessionmaker[Session]) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    now = [100.0]
    registry = CollectorRegistry()
    registry.register(FarmGauges(sessions, models=[model], ttl_s=10, clock=lambda: now[0]))

    def depth() -> float:
        return gauge(samples(generate_latest(registry).decode()), "farm_queue_depth", model=model)

    assert depth() == 0
    queue_job(sessions, model, cells=1)
    now[0] += 9.9
    assert depth() == 0  # still the cached reading
    now[0] += 0.1
    assert depth() == 1


def test_database_down_leaves_the_gauges_out() -> None:
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    try:
        gauges = FarmGauges(make_session_factory(engine), models=["simulated"], ttl_s=60)
        assert list(gauges.collect()) == []
        assert gauges.snapshot() is None  # a failure is not cached: the next scrape retries
    finally:
        engine.dispose()
