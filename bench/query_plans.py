"""The hot queries' plans on a 50,000-shard backlog: does each one use an index?

Builds the backlog (20 jobs x 10,000 cells of 5 tenants, batch 4: 50,000 shards,
200,000 cells; some claimed), runs the real functions — the fair-share claim, the
reconciler's queries, the job poll, an images page, a shard's cells, finishing a
shard — records every statement they send, and asks Postgres for
``EXPLAIN (ANALYZE, FORMAT JSON)`` of each, inside a transaction that is rolled back.

    python -m bench.query_plans                    # 50,000 shards
    python -m bench.query_plans --jobs 2 --cells 400
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from bench._common import emit, migrated_postgres
from models.db.cell_rows import queued_cells
from models.db.claims import claim_next_shard, claim_next_shard_stepwise
from models.db.finish import CellResult, finish_attempt, finish_attempt_stepwise
from models.db.jobs import NewJob, create_jobs, list_items
from models.db.keys import ensure_tenant
from models.db.pagination import encode_cursor
from models.db.reconcile import queued_counts, queued_ids, release_expired_leases
from models.db.scored_items import items_by_score
from models.db.session import make_engine, make_session_factory
from models.db.tables import Job, utcnow
from models.domain.spec import JobSpec
from models.infra.settings import normalize_database_url

MODEL = "bench-model"


def build_backlog(sessions: sessionmaker[Session], *, jobs: int, cells: int) -> list[uuid.UUID]:
    ids = []
    for j in range(jobs):
        spec = JobSpec.model_validate(
            {
                "prompts": [f"1girl, variant {j}-{p}" for p in range(10)],
                "seeds": {"start": 1, "count": max(1, cells // 10)},
                "priority": "bulk" if j % 3 == 2 else "normal",
            }
        )
        with sessions.begin() as session:
            tenant = ensure_tenant(session, name=f"plans-{j % 5}").id
            [created] = create_jobs(
                session,
                tenant_id=tenant,
                requests=[NewJob(spec)],
                default_model=MODEL,
                batch_size=4,
            )
            ids.append(created.job.id)
    with sessions.begin() as session:  # some shards rendering, as in a busy farm
        for w in range(min(50, jobs * 5)):
            claim_next_shard(session, model=MODEL, worker=f"w{w}", lease_s=600)
    with sessions.begin() as session:  # the last job scored (FARM_SCORER), for ?order=score
        scores = "UPDATE items SET score = round(random()::numeric, 6) WHERE job_id = :job"
        session.execute(text(scores), {"job": ids[-1]})
    with sessions() as session:
        session.execute(text("ANALYZE"))
        session.commit()
    return ids


@contextmanager
def recording(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def explain(session: Session, statement: str, params: Any) -> dict[str, Any]:
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute("SAVEPOINT plan")
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params)
        row = cursor.fetchone()
        cursor.execute("ROLLBACK TO SAVEPOINT plan")
    assert row is not None
    plan = (row[0] if isinstance(row[0], list) else json.loads(row[0]))[0]
    nodes = list(_walk(plan["Plan"]))
    scans = sorted(
        {
            f"{n['Node Type']} {n.get('Index Name', n.get('Relation Name', ''))}".strip()
            for n in nodes
            if "Scan" in n["Node Type"]
        }
    )
    return {
        "ms": round(plan["Execution Time"], 3),
        "scans": scans,
        "seq_scans": sorted(n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"),
    }


def plans(sessions: sessionmaker[Session], job_ids: list[uuid.UUID]) -> dict[str, list[Any]]:
    engine = sessions.kw["bind"]
    steps: dict[str, Callable[[Session], object]] = {
        "claim (farm_claim_shard: one statement)": lambda s: claim_next_shard(
            s, model=MODEL, worker="plans", lease_s=600
        ),
        # The same steps from Python: the queries the function runs, one by one.
        "claim, stepwise (the function's queries)": lambda s: claim_next_shard_stepwise(
            s, model=MODEL, worker="plans", lease_s=600, now=utcnow()
        ),
        "reconciler: expired leases": lambda s: release_expired_leases(s, now=utcnow()),
        "reconciler: queued counts": queued_counts,
        "reconciler: queued ids": lambda s: queued_ids(s, model=MODEL, limit=100),
        "job poll": lambda s: s.get(Job, job_ids[-1]),
        "images page": lambda s: list_items(s, job_id=job_ids[-1], cursor="WzUwMF0", limit=100),
        "images page, best score first": lambda s: items_by_score(
            s, job_id=job_ids[-1], cursor=encode_cursor(0.5, 0), limit=100
        ),
    }
    report: dict[str, list[Any]] = {}
    with sessions() as session:

        def explained(statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
            return [
                {"sql": " ".join(sql.split())[:160], **explain(session, sql, params)}
                for sql, params in statements
            ]

        for name, step in steps.items():
            with recording(engine) as statements:
                step(session)
            session.expunge_all()
            report[name] = explained(statements)
        for name, finish in (
            ("shard cells + finish_attempt", finish_attempt),
            ("finish, stepwise (the function's queries)", finish_attempt_stepwise),
        ):
            shard = claim_next_shard(session, model=MODEL, worker="plans", lease_s=600)
            assert shard is not None
            with recording(engine) as statements:
                cells = queued_cells(session, job_id=shard.job_id, shard_index=shard.index)
                results = [CellResult(c.index, f"k/{c.index}", "0" * 64, None, 10) for c in cells]
                finish(
                    session,
                    shard=shard,
                    worker="plans",
                    results=results,
                    failures=[],
                    max_attempts=3,
                    backoff_s=2.0,
                )
            report[name] = explained(statements)
        session.rollback()
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--cells", type=int, default=10_000, help="per job")
    args = parser.parse_args(argv)
    with migrated_postgres() as pg_url:
        engine = make_engine(normalize_database_url(pg_url))
        sessions = make_session_factory(engine)
        job_ids = build_backlog(sessions, jobs=args.jobs, cells=args.cells)
        report = plans(sessions, job_ids)
        engine.dispose()
    shards = args.jobs * -(-args.cells // 4)
    seq = sorted({t for steps in report.values() for q in steps for t in q["seq_scans"]})
    slowest = max((q["ms"] for steps in report.values() for q in steps), default=0.0)
    result = {"shards": shards, "queries": report, "seq_scans": seq, "slowest_ms": slowest}
    emit(
        "query_plans",
        result,
        f"{shards} shards: {sum(len(v) for v in report.values())} hot statements, slowest "
        f"{slowest} ms; sequential scans on: {', '.join(seq) or 'none'}",
    )
    return result


if __name__ == "__main__":
    main()
