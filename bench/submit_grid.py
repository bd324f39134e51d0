"""Accepting a big grid: validate, expand, persist, publish (goal: 10,000 cells in <= 0.5 s).

Two views of the same work, on real Postgres and real Redis (Celery's transport):

- ``http``: ``POST /v1/jobs`` through the real app in this process (ASGI, no
  socket), from request bytes to the 201 response;
- ``stages``: the functions that route calls, timed one by one (validate,
  expand + persist + commit, publish), to show where the time goes.

    python -m bench.submit_grid                 # 10,000 cells, 5 runs of each
    python -m bench.submit_grid --cells 400 --runs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from fastapi.testclient import TestClient

from api.main import create_app
from bench._common import emit, migrated_postgres, new_api_key, redis_database
from models.db.jobs import NewJob, create_jobs
from models.db.keys import ensure_tenant
from models.db.session import make_engine, make_session_factory
from models.domain.limits import check_limits
from models.domain.spec import JobSpec
from models.infra.queue import CeleryPublisher, make_celery
from models.infra.settings import Settings

PROMPT = "1girl, hatsune miku, vocaloid, twintails, smile, looking at viewer, upper body"


def grid_body(cells: int) -> dict[str, Any]:
    """prompts x 2 buckets x seeds, as close to ``cells`` as the factors allow."""
    prompts = max(1, min(100, cells // 200))
    seeds = max(1, cells // (prompts * 2))
    return {
        "prompts": [f"{PROMPT}, variant {i}" for i in range(prompts)],
        "buckets": ["1024x1024", "13:19"],
        "seeds": {"start": 1000, "count": seeds},
        "name": "bench grid",
    }


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def run_stages(settings: Settings, body: bytes, runs: int) -> dict[str, float]:
    sessions = make_session_factory(make_engine(settings.sqlalchemy_url))
    publisher = CeleryPublisher(make_celery(settings))
    with sessions.begin() as session:
        tenant = ensure_tenant(session, name=f"bench-{uuid.uuid4().hex[:8]}").id
    timings: dict[str, list[float]] = {"validate": [], "persist": [], "publish": [], "total": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        spec = JobSpec.model_validate_json(body)
        check_limits(spec, settings.limits)
        t1 = time.perf_counter()
        with sessions.begin() as session:
            [created] = create_jobs(
                session,
                tenant_id=tenant,
                requests=[NewJob(spec)],
                default_model=settings.model,
                batch_size=settings.batch_size,
            )
        t2 = time.perf_counter()
        publisher.publish(model=created.job.model, shard_ids=created.shard_ids)
        t3 = time.perf_counter()
        for name, value in (
            ("validate", t1 - t0),
            ("persist", t2 - t1),
            ("publish", t3 - t2),
            ("total", t3 - t0),
        ):
            timings[name].append(value)
    sessions.kw["bind"].dispose()
    return {f"{name}_ms": _median_ms(values) for name, values in timings.items()}


def run_http(settings: Settings, key: str, body: bytes, runs: int) -> dict[str, Any]:
    publisher = CeleryPublisher(make_celery(settings))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    seconds: list[float] = []
    total = 0
    with TestClient(create_app(settings, publisher=publisher)) as client:
        for _ in range(runs):
            t0 = time.perf_counter()
            response = client.post("/v1/jobs", content=body, headers=headers)
            seconds.append(time.perf_counter() - t0)
            response.raise_for_status()
            total = response.json()["total"]
    return {"cells": total, "median_ms": _median_ms(seconds), "max_ms": _median_ms([max(seconds)])}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    body = json.dumps(grid_body(args.cells)).encode()
    with (
        migrated_postgres() as pg_url,
        redis_database() as redis_url,
        TemporaryDirectory() as tmp,
    ):
        settings = Settings(
            database_url=pg_url,
            broker_url=redis_url,
            data_dir=Path(tmp),
            model="simulated",
            models={"simulated": "simulated:0"},
        )
        stages = run_stages(settings, body, args.runs)
        http = run_http(settings, new_api_key(pg_url), body, args.runs)
    shards = -(-http["cells"] // settings.batch_size)
    result = {"cells": http["cells"], "shards": shards, "runs": args.runs}
    result |= {"http": http, "stages": stages, "goal_ms": 500}
    emit(
        "submit_grid",
        result,
        f"{http['cells']} cells ({shards} shards) accepted in {http['median_ms']} ms "
        f"(validate {stages['validate_ms']} + persist {stages['persist_ms']} + "
        f"publish {stages['publish_ms']} ms); goal <= 500 ms",
    )
    return result


if __name__ == "__main__":
    main()
