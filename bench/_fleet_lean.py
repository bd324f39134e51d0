"""bench/fleet.py's lean client (``--client lean``): the farm's own claim, cells and
finish statements (``CLAIM_SQL``, ``QUEUED_CELLS``, ``FINISH_ASYNC_SQL``, compiled from
the farm's modules, never copied) sent on one plain psycopg connection per simulated
worker, in autocommit as ``statement_transactions`` sends them, without SQLAlchemy's
Session and Result around each one.

Why: on this 2-core machine the load generator shares the cores with Postgres. Through
the farm's Session a claim-render-finish cycle costs the client ~2.5 ms of CPU, ~0.9 of a
core at 370 claims/s, which in production runs on the GPU hosts, not beside Postgres.
What reaches Postgres and PgBouncer is the same: the same statements, in the same
transactions, in the same order; the settle of a completed job goes through the farm's
``settle_if_complete`` as ``finish_committed`` does.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
from sqlalchemy import ClauseElement
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from bench._fleet_tally import Tally
from models.db.cell_rows import QUEUED_CELLS, cell_of
from models.db.claims import CLAIM_SQL, ClaimedShard
from models.db.finish import CellResult
from models.db.finish_committed import settle_if_complete
from models.db.finish_sql import FINISH_ASYNC_SQL, finish_params
from models.db.tables import utcnow
from models.domain.cells import CELL_FIELDS
from models.domain.status import JobStatus, final_job_status

_DIALECT = postgresql.psycopg.dialect(paramstyle="pyformat")  # type: ignore[no-untyped-call]


def _compiled(statement: ClauseElement) -> tuple[str, dict[str, Any]]:
    """The statement as psycopg takes it, and the values it binds itself."""
    compiled = statement.compile(dialect=_DIALECT)
    return str(compiled), dict(compiled.params)


_CLAIM, _ = _compiled(CLAIM_SQL)
_CELLS, _CELLS_BOUND = _compiled(QUEUED_CELLS)
_FINISH, _ = _compiled(FINISH_ASYNC_SQL)

_OPEN = (JobStatus.QUEUED, JobStatus.RUNNING)


def lean_worker(
    i: int,
    url: str,
    sessions: sessionmaker[Session],
    model: str,
    clock: dict[str, float],
    tally: Tally,
) -> None:
    """One simulated GPU worker on its own connection (bench/_fleet_workers.worker's
    schedule and tally)."""
    period, start, measure, stop = clock["period"], clock["start"], clock["measure"], clock["stop"]
    tick = start + period * i / clock["n"]
    name = f"sim-{i}"
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as connection:
        while tick < stop:
            time.sleep(max(0.0, tick - time.monotonic()))
            tick += period
            try:
                t0 = time.perf_counter()
                shard = _claim(connection, model, name)
                cells = [] if shard is None else _cells(connection, shard)
                t1 = time.perf_counter()
                if shard is None:
                    tally.empty.append(1)
                    continue
                results = [CellResult(c.index, f"sim/{c.index}", "0" * 64, None, 0) for c in cells]
                _finish(connection, sessions, shard, name, results)
                t2 = time.perf_counter()
            except Exception as exc:  # reported, never hidden: the run counts as failed
                tally.errors.append(repr(exc)[:300])
                continue
            if measure <= time.monotonic() < stop:
                tally.claim_ms.append((t1 - t0) * 1000)
                tally.finish_ms.append((t2 - t1) * 1000)
                tally.tenants[shard.tenant_id] += 1
                tally.images.append(len(results))


def _claim(connection: psycopg.Connection[Any], model: str, name: str) -> ClaimedShard | None:
    params = {
        "model": model,
        "worker": name,
        "lease_s": 600,
        "now": utcnow(),
        "adapters": None,
        "lookahead": 0,
    }
    row = connection.execute(_CLAIM, params).fetchone()
    return None if row is None else ClaimedShard(*row[:-1])


def _cells(connection: psycopg.Connection[Any], shard: ClaimedShard) -> list[Any]:
    params = {**_CELLS_BOUND, "job_id": shard.job_id, "shard_index": shard.index}
    rows = connection.execute(_CELLS, params).fetchall()
    return [cell_of(dict(zip(CELL_FIELDS, row, strict=True))) for row in rows]


def _finish(
    connection: psycopg.Connection[Any],
    sessions: sessionmaker[Session],
    shard: ClaimedShard,
    name: str,
    results: list[CellResult],
) -> None:
    params = finish_params(
        shard=shard, worker=name, results=results, failures=[], max_attempts=3, backoff_s=1
    )
    row = connection.execute(_FINISH, params).fetchone()
    assert row is not None
    status, total, done, failed, cancelled = row[3:8]
    counted = final_job_status(total=total, done=done, failed=failed, cancelled=cancelled)
    if status in _OPEN and counted is not None:  # as finish_committed settles it
        with sessions.begin() as session:
            settle_if_complete(session, job_id=uuid.UUID(str(shard.job_id)))
