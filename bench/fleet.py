"""Fleet simulator: N GPU workers' claims and finishes on one Postgres behind PgBouncer.

Each simulated worker is a thread with a connection of its own through a real PgBouncer
in transaction mode (tests/pgbouncer.py; its pool is the only way to Postgres). Every
``--period`` seconds (2.7 s: a 4-cell shard on an H100 at 1.5 images/s) it claims a
shard with the farm's claim, its cells in the same round trip, as the worker does
(models/db/claim_cells.py), renders it in zero time and finishes it (models/db/finish.py); no
images, no storage, no broker. Two scenarios: ``backlog`` (many tenants, many jobs)
and ``giant`` (one 100,000-cell job). Reported per N: claims/s against the target,
p50/p99 claim and finish latency, lock waits, PgBouncer's server connections and
queued clients, Postgres CPU per image (/proc of the backends) and, for the backlog,
each tenant's share against the fair one.

    python -m bench.fleet                         # N = 50, 200, 1000; both scenarios
    python -m bench.fleet --workers 1000 --scenario giant --seconds 30
    python -m bench.fleet --quick                 # a few seconds: the test's setting
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from bench._common import emit, migrated_postgres
from bench._fleet_cycle import Tally
from bench._fleet_probe import Probe, backend_cpu_s
from bench._fleet_workers import run_part
from models.db.jobs import NewJob, create_jobs
from models.db.keys import ensure_tenant
from models.db.session import make_engine, make_session_factory
from models.domain.spec import JobSpec
from models.infra.settings import normalize_database_url
from tests.pgbouncer import PgBouncer, pgbouncer

BATCH = 4


def populate(
    sessions: sessionmaker[Session], model: str, scenario: str, cells: int, tenants: int
) -> None:
    """The queue: ``cells`` cells in 4-cell shards for ``model``."""
    plan = [(0, cells)] if scenario == "giant" else [(t, cells // tenants) for t in range(tenants)]
    for t, n in plan:
        jobs = 1 if scenario == "giant" else 4
        with sessions.begin() as session:
            owner = ensure_tenant(session, name=f"fleet-{model}-{t}")
            prompts = [f"p{i}" for i in range(10)]
            requests = [
                NewJob(JobSpec.model_validate({"prompts": prompts, "seeds": list(range(s))}))
                for s in [max(n // jobs // 10, 1)] * jobs
            ]
            create_jobs(
                session,
                tenant_id=owner.id,
                requests=requests,
                default_model=model,
                batch_size=BATCH,
            )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 2)


def run_one(
    pg_url: str, bouncer: PgBouncer, scenario: str, n: int, args: argparse.Namespace
) -> dict[str, Any]:
    model = f"fleet-{uuid.uuid4().hex[:6]}"  # a queue of its own: runs never meet
    target = n / args.period
    cells = (
        args.giant_cells
        if scenario == "giant"
        else int(target * (args.seconds + args.warmup) * BATCH * 1.5) + BATCH * 40
    )
    direct = make_session_factory(make_engine(normalize_database_url(pg_url)))
    t = time.perf_counter()
    populate(direct, model, scenario, cells, args.tenants)
    # The planner's statistics as autovacuum leaves them within a minute: without them,
    # a fresh database's estimate of one queued shard made the claim scan all of a giant
    # job's queued shards through ix_shards_status, four times per claim (40 ms each).
    with direct.begin() as session:
        session.execute(text("ANALYZE shards, items, jobs, tenants"))
    populate_s = time.perf_counter() - t
    database = pg_url.rsplit("/", 1)[1]
    probe = Probe(pg_url, database, bouncer)
    procs = max(1, min(args.procs, n))
    now = time.monotonic()
    start = now + 0.5 + 0.2 * procs  # the processes are up before the first tick
    clock = {
        "period": args.period,
        "n": float(n),
        "start": start,
        "measure": start + args.warmup,
        "stop": start + args.warmup + args.seconds,
    }
    url = bouncer.url_for(pg_url)
    context = multiprocessing.get_context("fork")  # fast start; children open their own pools
    results: multiprocessing.Queue[tuple[Tally, float]] = context.Queue()
    children = [
        context.Process(
            target=run_part,
            args=(url, list(range(p, n, procs)), model, clock, results, args.finish, args.client),
            daemon=True,
        )
        for p in range(procs)
    ]
    for child in children:
        child.start()
    time.sleep(max(0.0, clock["measure"] - time.monotonic()))
    cpu_before = backend_cpu_s(probe.pids())
    probe.start()
    time.sleep(max(0.0, clock["stop"] - time.monotonic()))
    probe.stop()
    cpu_after = backend_cpu_s(probe.pids())
    # Every worker's last cycle ends before the next run starts: a run must not
    # measure the previous run's queue (drain_s says how long that took).
    drained = time.monotonic()
    tally, client_cpu = Tally(), 0.0
    for _ in children:
        part, cpu = results.get(timeout=600)
        client_cpu += cpu
        tally.merge(part)
    for child in children:
        child.join(60)
    drain_s = time.monotonic() - drained
    direct.kw["bind"].dispose()
    pg_cpu = sum(cpu - cpu_before.get(pid, 0.0) for pid, cpu in cpu_after.items())
    images = sum(tally.images)
    claims = len(tally.claim_ms)
    result: dict[str, Any] = {
        "scenario": scenario,
        "workers": n,
        "queued_cells": cells,
        "populate_s": round(populate_s, 1),
        "target_claims_per_s": round(target, 1),
        "claims_per_s": round(claims / args.seconds, 1),
        "images_per_s": round(images / args.seconds, 1),
        "claim_ms_p50": percentile(tally.claim_ms, 50),
        "claim_ms_p99": percentile(tally.claim_ms, 99),
        "finish_ms_p50": percentile(tally.finish_ms, 50),
        "finish_ms_p99": percentile(tally.finish_ms, 99),
        "empty_claims": len(tally.empty),
        "errors": len(tally.errors),
        "first_errors": tally.errors[:3],
        "postgres_cpu_s": round(pg_cpu, 2),
        "postgres_cores": round(pg_cpu / args.seconds, 2),
        "postgres_cpu_ms_per_image": round(pg_cpu * 1000 / images, 3) if images else None,
        "finish": args.finish,
        "client": args.client,
        "simulator_processes": procs,
        "simulator_cpu_s": round(client_cpu, 2),  # the simulated workers, inside the window
        "simulator_cores": round(client_cpu / args.seconds, 2),
        "drain_s": round(drain_s, 1),
        **probe.summary(),
    }
    if scenario == "backlog" and tally.tenants:
        fair = claims / args.tenants
        shares = [tally.tenants.get(t, 0) for t in tally.tenants] + [0] * (
            args.tenants - len(tally.tenants)
        )
        result["tenants_served"] = len(tally.tenants)
        result["fair_share_claims"] = round(fair, 1)
        result["share_min_over_fair"] = round(min(shares) / fair, 3)
        result["share_max_over_fair"] = round(max(shares) / fair, 3)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="50,200,1000", help="N, comma-separated")
    parser.add_argument("--scenario", choices=["backlog", "giant", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0, help="before the window")
    parser.add_argument("--period", type=float, default=2.7, help="s between a worker's claims")
    parser.add_argument("--tenants", type=int, default=20, help="backlog: tenants")
    parser.add_argument("--giant-cells", type=int, default=100_000)
    # PgBouncer's server connections. The development machine's Postgres (max_connections
    # 100) is shared with other test runs: 30 here; production sizes it in docs/DEPLOY.md.
    parser.add_argument("--pool", type=int, default=30, help="PgBouncer's server connections")
    # One process of 1,000 threads spends its time waiting for the GIL, and a finish
    # holds the job's counters until its thread gets it back to send COMMIT: a GPU
    # host is a process of its own. Several processes spread the threads over the cores.
    parser.add_argument("--procs", type=int, default=8, help="simulator processes")
    parser.add_argument(
        "--finish",
        choices=["committed", "transaction", "worker"],
        default="committed",
        help="committed: finish_committed (its own statement transaction, then the settle);"
        " transaction: finish_attempt alone in a transaction; worker: record_attempt, as the"
        " GPU worker records a shard (its extras, the finish, then the job's follow-up)",
    )
    parser.add_argument(
        "--client",
        choices=["farm", "lean"],
        default="farm",
        help="farm: the farm's claim and finish functions (SQLAlchemy Session); lean: the"
        " same statements on a plain psycopg connection per worker (bench/_fleet_lean.py),"
        " so that the load generator leaves Postgres its cores",
    )
    parser.add_argument("--quick", action="store_true", help="N = 8, 3 s: a smoke run")
    args = parser.parse_args(argv)
    if args.client == "lean" and args.finish == "transaction":
        parser.error("--client lean sends statement transactions: --finish committed or worker")
    if args.quick:
        args.workers, args.seconds, args.warmup, args.period = "8", 3.0, 1.0, 0.5
        args.tenants, args.giant_cells, args.pool, args.procs = 4, 2_000, 4, 2
    sizes = [int(n) for n in args.workers.split(",")]
    scenarios = ["backlog", "giant"] if args.scenario == "both" else [args.scenario]
    runs: list[dict[str, Any]] = []
    with (
        migrated_postgres() as pg_url,
        pgbouncer(pg_url, pool_size=args.pool, max_client_conn=max(sizes) + 50) as bouncer,
    ):
        for scenario in scenarios:
            for n in sizes:
                runs.append(run_one(pg_url, bouncer, scenario, n, args))
                print(runs[-1], flush=True)
    summary = "; ".join(
        f"{r['scenario']} N={r['workers']}: {r['claims_per_s']}/{r['target_claims_per_s']}"
        f" claims/s, claim p99 {r['claim_ms_p99']} ms, {r['errors']} errors"
        for r in runs
    )
    result = {"period_s": args.period, "pool": args.pool, "runs": runs}
    emit("fleet", result, summary)
    return result


if __name__ == "__main__":
    main()
