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
``settle_after_finish`` as ``finish_committed`` does.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import ClauseElement
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from bench._fleet_cycle import Tally, simulate
from models.db.cell_rows import QUEUED_CELLS, cell_of
from models.db.claims import CLAIM_SQL, ClaimedShard
from models.db.finish import CellResult
from models.db.finish_committed import settle_after_finish
from models.db.finish_sql import FINISH_ASYNC_SQL, finish_params
from models.db.tables import utcnow
from models.domain.cells import CELL_FIELDS, Cell

_DIALECT = postgresql.psycopg.dialect(paramstyle="pyformat")  # type: ignore[no-untyped-call]


def _compiled(statement: ClauseElement) -> tuple[str, dict[str, Any]]:
    """The statement as psycopg takes it, and the values it binds itself."""
    compiled = statement.compile(dialect=_DIALECT)
    return str(compiled), dict(compiled.params)


_CLAIM, _ = _compiled(CLAIM_SQL)
_CELLS, _CELLS_BOUND = _compiled(QUEUED_CELLS)
_FINISH, _ = _compiled(FINISH_ASYNC_SQL)


def lean_worker(
    i: int,
    url: str,
    sessions: sessionmaker[Session],
    model: str,
    clock: dict[str, float],
    tally: Tally,
) -> None:
    """A simulated worker on its own plain connection (the module docstring)."""
    name = f"sim-{i}"
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as connection:

        def claim() -> tuple[ClaimedShard | None, list[Cell]]:
            shard = _claim(connection, model, name)
            return (None, []) if shard is None else (shard, _cells(connection, shard))

        def record(shard: ClaimedShard, results: list[CellResult]) -> None:
            _finish(connection, sessions, shard, name, results)

        simulate(i, clock, tally, claim, record)


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


def _cells(connection: psycopg.Connection[Any], shard: ClaimedShard) -> list[Cell]:
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
    settle_after_finish(sessions, job_id=shard.job_id, row=row)  # as finish_committed does
