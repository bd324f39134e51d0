"""What one worker cycle costs Postgres: the claim with its cells, then the finish, on one
connection straight to Postgres, the two ways a worker has claimed.

bench/fleet.py measures a fleet, where on this 2-core machine Postgres, PgBouncer and the
load generator share the cores; this measures the statements alone. Per scenario
(``backlog``: 20 tenants x 4 jobs; ``giant``: one job) it fills a fresh database, claims
``--running`` shards and leaves them running (the fleet's steady state), then runs blocks
of ``--cycles`` cycles, each way in turn (so that both see the queue at the same depth):

- ``two-statements``: ``farm_claim_shard`` and then the cells' query, as a worker did
  before ``farm_claim_cells`` (migration 0018);
- ``claim-cells``: ``farm_claim_cells``, one statement (what the worker sends now).

It reports, per way, the backend's CPU per cycle (/proc, utime + stime) and the wall
time of the claim and the finish round trips (median and p90 over all blocks).

    python -m bench.claim_cost                     # both scenarios
    python -m bench.claim_cost --scenario backlog --blocks 6 --cycles 400
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from bench._common import emit, migrated_postgres
from bench._fleet_lean import compiled_statement
from bench._fleet_probe import backend_cpu_s
from bench.fleet import populate
from models.db.cell_rows import QUEUED_CELLS, cell_of
from models.db.claim_cells import CLAIM_CELLS_SQL, claimed_from_rows
from models.db.claims import CLAIM_SQL, ClaimedShard, claim_params
from models.db.finish import CellResult
from models.db.finish_sql import FINISH_ASYNC_SQL, FinishArgs, finish_params
from models.db.session import make_engine, make_session_factory
from models.domain.cells import CELL_FIELDS, Cell
from models.infra.settings import normalize_database_url

Claimed = tuple[ClaimedShard, list[Cell]] | None
_CLAIM, _ = compiled_statement(CLAIM_SQL)
_CELLS, _CELLS_BOUND = compiled_statement(QUEUED_CELLS)
_CLAIM_CELLS, _ = compiled_statement(CLAIM_CELLS_SQL)
_FINISH, _ = compiled_statement(FINISH_ASYNC_SQL)


def _params(model: str) -> dict[str, Any]:
    return claim_params({"model": model, "worker": "cost", "lease_s": 600})


def _two_statements(connection: psycopg.Connection[Any], model: str) -> Claimed:
    row = connection.execute(_CLAIM, _params(model)).fetchone()
    if row is None:
        return None
    shard = ClaimedShard(*row[:-1])
    params = {**_CELLS_BOUND, "job_id": shard.job_id, "shard_index": shard.index}
    rows = connection.execute(_CELLS, params).fetchall()
    return shard, [cell_of(dict(zip(CELL_FIELDS, r, strict=True))) for r in rows]


def _claim_cells(connection: psycopg.Connection[Any], model: str) -> Claimed:
    return claimed_from_rows(connection.execute(_CLAIM_CELLS, _params(model)).fetchall())


WAYS: dict[str, Callable[[psycopg.Connection[Any], str], Claimed]] = {
    "two-statements": _two_statements,
    "claim-cells": _claim_cells,
}


def _block(
    connection: psycopg.Connection[Any], model: str, way: str, cycles: int
) -> dict[str, Any]:
    claim = WAYS[way]
    pid = connection.info.backend_pid
    claim_ms, finish_ms = [], []
    cpu = backend_cpu_s([pid])[pid]
    for _ in range(cycles):
        t0 = time.perf_counter()
        claimed = claim(connection, model)
        t1 = time.perf_counter()
        assert claimed is not None, "the queue ran dry: fewer --cycles or more cells"
        shard, cells = claimed
        results = [CellResult(c.index, f"cost/{c.index}", "0" * 64, None, 0) for c in cells]
        params = finish_params(
            FinishArgs(
                shard=shard,
                worker="cost",
                results=results,
                failures=[],
                max_attempts=3,
                backoff_s=1,
            )
        )
        connection.execute(_FINISH, params).fetchone()
        claim_ms.append((t1 - t0) * 1000)
        finish_ms.append((time.perf_counter() - t1) * 1000)
    cpu = backend_cpu_s([pid])[pid] - cpu
    return {"cpu_ms": cpu * 1000 / cycles, "claim_ms": claim_ms, "finish_ms": finish_ms}


def run_scenario(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    model = f"cost-{uuid.uuid4().hex[:6]}"
    total = args.running + args.blocks * args.cycles * len(WAYS)
    with migrated_postgres() as url:
        direct = make_session_factory(make_engine(normalize_database_url(url)))
        populate(direct, model, scenario, total * 8 + 4000, tenants=20)  # rounded down
        direct.kw["bind"].dispose()
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as connection:
            connection.execute("ANALYZE shards, items, jobs, tenants")
            for _ in range(args.running):  # running, never finished: the fleet's leases
                connection.execute(_CLAIM, _params(model)).fetchone()
            blocks: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
            for _ in range(args.blocks):
                for way in WAYS:
                    blocks[way].append(_block(connection, model, way, args.cycles))
    return {way: _summary(found) for way, found in blocks.items()}


def _summary(blocks: list[dict[str, Any]]) -> dict[str, float]:
    claim = [ms for b in blocks for ms in b["claim_ms"]]
    finish = [ms for b in blocks for ms in b["finish_ms"]]
    decile = statistics.quantiles
    return {
        "postgres_cpu_ms_per_cycle": round(statistics.median(b["cpu_ms"] for b in blocks), 3),
        "claim_ms_p50": round(statistics.median(claim), 3),
        "claim_ms_p90": round(decile(claim, n=10)[-1], 3),
        "finish_ms_p50": round(statistics.median(finish), 3),
        "finish_ms_p90": round(decile(finish, n=10)[-1], 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["backlog", "giant", "both"], default="both")
    parser.add_argument("--running", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args(argv)
    scenarios = ["backlog", "giant"] if args.scenario == "both" else [args.scenario]
    result = {"scenarios": {s: run_scenario(s, args) for s in scenarios}}
    summary = "; ".join(
        f"{s} {way} {r['postgres_cpu_ms_per_cycle']} ms CPU/cycle"
        for s, ways in result["scenarios"].items()
        for way, r in ways.items()
    )
    emit("claim_cost", result, summary)
    return result


if __name__ == "__main__":
    main()
