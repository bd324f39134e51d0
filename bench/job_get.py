"""``GET /v1/jobs/{id}`` under concurrent pollers (goal: >= 1,500 req/s, p99 <= 50 ms).

A real API server (``farm api [--workers N]``) on real Postgres polls one
10,000-cell job. Two kinds of poller: ``plain`` (no validators: a full JSON body
each time) and ``etag`` (sends the ``If-None-Match`` it was given: 304 while
nothing changed). The load generator shares the machine's cores with the server
and Postgres: see the JSON's ``server_cpu_ms_per_request`` and the load average.

    python -m bench.job_get                            # 32 pollers, 10 s per kind
    python -m bench.job_get --duration 2 --connections 4
    python -m bench.job_get --workers 2                # farm api --workers 2
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    FarmProcess,
    ModuleProcess,
    emit,
    farm_env,
    free_port,
    new_api_key,
    services,
    wait_http_ok,
)
from bench._http_load import run_load
from bench.submit_grid import grid_body


def _process_cpu_s(pid: int) -> float:
    """User + system seconds of a process and its reaped children... and live children."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    ticks = os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def start_api(env: dict[str, str], port: int, workers: int, uvicorn_args: str) -> FarmProcess:
    """``farm api`` as deployed; or uvicorn itself for other server options."""
    if not uvicorn_args:
        return FarmProcess(["api", "--port", str(port), "--workers", str(workers)], env).start()
    args = ["farm.asgi:app", "--factory", "--port", str(port), "--workers", str(workers)]
    args += ["--log-level", "warning", *shlex.split(uvicorn_args)]
    return ModuleProcess("uvicorn", args, env).start()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="API processes")
    parser.add_argument("--rate-limit", type=int, default=0, help="per tenant; 0: off")
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto")
    parser.add_argument(
        "--uvicorn-args", default="", help="e.g. '--http h11 --loop asyncio' (the old defaults)"
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with services() as svc:
        pg_url, redis_url, s3 = svc.pg_url, svc.redis_url, svc.s3
        env = farm_env(
            pg_url=pg_url,
            redis_url=redis_url,
            s3=s3,
            data_dir=svc.data_dir,
            models={"simulated": "simulated:0"},
            model="simulated",
            # One tenant polls here: its 100 requests/s limit would answer 429s.
            extra={"FARM_RATE_LIMIT_PER_S": str(args.rate_limit)},
        )
        key = new_api_key(pg_url, f"bench-{uuid.uuid4().hex[:8]}")
        port = free_port()
        api = start_api(env, port, args.workers, args.uvicorn_args)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{base}/healthz")
            auth = {"Authorization": f"Bearer {key}"}
            body = grid_body(10_000)
            created = httpx.post(f"{base}/v1/jobs", json=body, headers=auth, timeout=60)
            created.raise_for_status()
            url = f"{base}/v1/jobs/{created.json()['id']}"
            etag = httpx.get(url, headers=auth).headers["etag"]
            for kind, headers in (("plain", auth), ("etag", {**auth, "If-None-Match": etag})):
                run_load(url, headers, connections=2, duration_s=1, client=args.client)  # warm
                cpu_before, started = _process_cpu_s(api.proc.pid), time.perf_counter()
                load = run_load(
                    url,
                    headers,
                    connections=args.connections,
                    duration_s=args.duration,
                    client=args.client,
                )
                elapsed = time.perf_counter() - started
                cpu = _process_cpu_s(api.proc.pid) - cpu_before
                results[kind] = {
                    **load.__dict__,
                    "server_cpu_ms_per_request": round(1000 * cpu / max(1, load.requests), 3),
                    "server_cores_used": round(cpu / elapsed, 2),
                }
        finally:
            api.stop()
    result = {
        "workers": args.workers,
        "uvicorn_args": args.uvicorn_args,
        **results,
        "goal": {"requests_per_s": 1500, "p99_ms": 50},
    }
    summary = "; ".join(
        f"{kind}: {r['requests_per_s']:.0f} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms"
        for kind, r in results.items()
    )
    emit(
        "job_get",
        result,
        f"{args.connections} pollers, {args.workers} API process(es), "
        f"{results['plain']['client']}: {summary}; goal >= 1500 req/s, p99 <= 50 ms",
    )
    return result


if __name__ == "__main__":
    main()
