"""Control-plane capacity: images/s end to end, against Celery's own no-op task rate.

Everything real but the GPU: ``farm api`` → Postgres → Redis → ``farm worker``
processes (claim, render, PNG, S3 upload to moto's server, record, thumbnails and
contact sheets) → job status polled over HTTP. Renders take no time and draw 8x8
pictures (bench/_tiny_worker.py): a 1024² PNG encode is a worker's cost, measured by
bench/gpu_busy.py, not the control plane's.

The yardstick, in the same run with the same number of worker processes: a no-op
Celery task on the farm's Celery configuration (bench/_noop_celery.py), published
with Celery's own ``send_task``, timed until every task ran.
Goals: >= 200 images/s, and >= 0.4 x the no-op task rate.

    python -m bench.control_plane                         # 2,000 images, 2 workers
    python -m bench.control_plane --images 40 --noop-tasks 200 --workers 1
    python -m bench.control_plane --storage local        # without S3: our own costs
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import httpx
import redis
from celery import Celery

from bench._common import (
    FarmProcess,
    ModuleProcess,
    cpu_seconds,
    emit,
    farm_env,
    free_port,
    new_api_key,
    pids_matching,
    services,
    wait_http_ok,
)

MODEL = "simulated"
TERMINAL = {"succeeded", "partial", "failed", "cancelled"}


def _drained(client: redis.Redis, queue: str) -> bool:
    return int(client.llen(queue)) == 0 and int(client.hlen("unacked")) == 0


def noop_rate(env: dict[str, str], redis_url: str, *, tasks: int, workers: int) -> dict[str, Any]:
    from bench._noop_celery import NOOP_QUEUE, NOOP_TASK

    args = ["-A", "bench._noop_celery", "worker", "--pool=solo", "--concurrency=1"]
    args += [f"--queues={NOOP_QUEUE}", "--without-gossip", "--without-mingle", "-l", "INFO"]
    procs = [
        ModuleProcess("celery", [*args, f"--hostname=noop{i}@%h"], env).start()
        for i in range(workers)
    ]
    client = redis.Redis.from_url(redis_url)
    try:
        for proc in procs:
            proc.wait_for_line("ready.", timeout_s=120)
        app = Celery("bench-noop", broker=redis_url)
        app.conf.update(task_serializer="json", task_ignore_result=True)
        started = time.perf_counter()
        with app.producer_or_acquire() as producer, producer.batch():
            for i in range(tasks):
                app.send_task(NOOP_TASK, args=[i], queue=NOOP_QUEUE, producer=producer)
        published = time.perf_counter()
        while not _drained(client, NOOP_QUEUE):
            time.sleep(0.005)
        finished = time.perf_counter()
    finally:
        for proc in procs:
            proc.stop()
        client.close()
    return {
        "tasks": tasks,
        "publish_s": round(published - started, 3),
        "wall_s": round(finished - started, 3),
        "tasks_per_s": round(tasks / (finished - started), 1),
    }


def _cpu_snapshot(groups: dict[str, list[int]]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pids in groups.values() for pid in pids}


def _cpu_by_group(
    groups: dict[str, list[int]], before: dict[int, float], images: int
) -> dict[str, float]:
    """CPU milliseconds per recorded image, per process group."""
    return {
        name: round(
            1000 * sum(cpu_seconds(p) - before.get(p, 0.0) for p in pids) / max(1, images), 2
        )
        for name, pids in groups.items()
    }


def farm_rate(
    env: dict[str, str],
    key: str,
    *,
    images: int,
    jobs: int,
    workers: int,
    services: dict[str, str],
) -> dict[str, Any]:
    port = free_port()
    api = FarmProcess(["api", "--port", str(port)], env).start()
    procs = [
        ModuleProcess("bench._tiny_worker", ["worker", "--model", MODEL], env).start()
        for _ in range(workers)
    ]
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    try:
        wait_http_ok(f"{base}/healthz")
        for proc in procs:
            proc.wait_for_line("ready.", timeout_s=180)
        per_job = max(1, images // jobs)
        groups = {
            "api": [api.proc.pid],
            "workers": [p.proc.pid for p in procs],
            **{name: pids_matching(text) for name, text in services.items()},
        }
        with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
            cpu_before = _cpu_snapshot(groups)
            started = time.perf_counter()
            ids = []
            for j in range(jobs):
                spec = {
                    "prompts": [f"1girl, solo, variant {j}-{p}" for p in range(2)],
                    "seeds": {"start": 1, "count": max(1, per_job // 2)},
                    "model": MODEL,
                }
                response = client.post("/v1/jobs", json=spec)
                response.raise_for_status()
                ids.append(response.json()["id"])
            submitted = time.perf_counter()
            pending = set(ids)
            done = 0
            while pending:
                time.sleep(0.25)  # a client's poll: not so often that it loads the API
                for job_id in list(pending):
                    job = client.get(f"/v1/jobs/{job_id}").json()
                    if job["status"] in TERMINAL:
                        pending.discard(job_id)
                        done += job["done"]
            finished = time.perf_counter()
            groups["postgres"] = pids_matching(services["postgres"])  # backends opened since
            cpu_ms = _cpu_by_group(groups, cpu_before, done)
    finally:
        for proc in procs:
            proc.stop()
        api.stop()
    total = 2 * max(1, per_job // 2) * jobs
    return {
        "images": total,
        "recorded": done,
        "jobs": jobs,
        "submit_s": round(submitted - started, 3),
        "wall_s": round(finished - started, 3),
        "images_per_s": round(done / (finished - started), 1),
        # Where the CPU went, per image. Postgres: this database's backends only;
        # Redis is shared with whatever else runs on the machine.
        "cpu_ms_per_image": cpu_ms,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (both sides)")
    parser.add_argument("--noop-tasks", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--storage",
        choices=["s3", "local"],
        default="s3",
        help="local: a shared folder instead of moto's S3 server (our own costs alone)",
    )
    args = parser.parse_args(argv)
    with services() as svc:
        pg_url, redis_url, s3 = svc.pg_url, svc.redis_url, svc.s3
        env = farm_env(
            pg_url=pg_url,
            redis_url=redis_url,
            s3=s3,
            data_dir=svc.data_dir,
            models={MODEL: "simulated:0"},
            model=MODEL,
            extra={"FARM_BATCH_SIZE": str(args.batch_size)},
        )
        if args.storage == "local":  # every process shares svc.data_dir
            env.update({"FARM_S3_BUCKET": "", "FARM_S3_ENDPOINT_URL": ""})
        noop = noop_rate(env, redis_url, tasks=args.noop_tasks, workers=args.workers)
        key = new_api_key(pg_url, f"bench-{uuid.uuid4().hex[:8]}")
        processes = {
            "postgres": f"postgres {pg_url.rsplit('/', 1)[1]} ",
            "redis": "redis-server",
            "s3 (moto)": f"bench._moto -H 127.0.0.1 -p {s3.endpoint_url.rsplit(':', 1)[1]}",
        }
        farm = farm_rate(
            env, key, images=args.images, jobs=args.jobs, workers=args.workers, services=processes
        )
    ratio = round(farm["images_per_s"] / noop["tasks_per_s"], 3)
    result = {
        "storage": args.storage,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "farm": farm,
        "celery_noop": noop,
        "ratio_vs_noop": ratio,
        "goal": {"images_per_s": 200, "ratio_vs_noop": 0.4},
    }
    emit(
        "control_plane",
        result,
        f"{farm['recorded']} images, {args.workers} workers, batch {args.batch_size}, "
        f"storage {args.storage}: "
        f"{farm['images_per_s']} images/s end to end vs Celery no-op {noop['tasks_per_s']} "
        f"tasks/s ({ratio}x); goal >= 200 images/s and >= 0.4x",
    )
    return result


if __name__ == "__main__":
    main()
