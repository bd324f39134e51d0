"""bench/fleet.py's lean client (``--client lean``): the farm's own claim and finish
statements (``CLAIM_CELLS_SQL``, ``FINISH_ASYNC_SQL``, compiled from
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
from models.db.claim_cells import CLAIM_CELLS_SQL, claimed_from_rows
from models.db.claims import ClaimedShard, claim_params
from models.db.finish import CellResult
from models.db.finish_committed import settle_after_finish
from models.db.finish_sql import FINISH_ASYNC_SQL, FinishArgs, finish_params
from models.domain.cells import Cell

_DIALECT = postgresql.psycopg.dialect(paramstyle="pyformat")  # type: ignore[no-untyped-call]


def compiled_statement(statement: ClauseElement) -> tuple[str, dict[str, Any]]:
    """The statement as psycopg takes it, and the values it binds itself."""
    compiled = statement.compile(dialect=_DIALECT)
    return str(compiled), dict(compiled.params)


_CLAIM, _ = compiled_statement(CLAIM_CELLS_SQL)
_FINISH, _ = compiled_statement(FINISH_ASYNC_SQL)


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

        def claim() -> tuple[ClaimedShard, list[Cell]] | None:
            return _claim(connection, model, name)

        def record(shard: ClaimedShard, results: list[CellResult]) -> None:
            _finish(connection, sessions, shard, name, results)

        simulate(i, clock, tally, claim, record)


def _claim(
    connection: psycopg.Connection[Any], model: str, name: str
) -> tuple[ClaimedShard, list[Cell]] | None:
    params = claim_params({"model": model, "worker": name, "lease_s": 600})
    return claimed_from_rows(connection.execute(_CLAIM, params).fetchall())


def _finish(
    connection: psycopg.Connection[Any],
    sessions: sessionmaker[Session],
    shard: ClaimedShard,
    name: str,
    results: list[CellResult],
) -> None:
    params = finish_params(
        FinishArgs(
            shard=shard, worker=name, results=results, failures=[], max_attempts=3, backoff_s=1
        )
    )
    row = connection.execute(_FINISH, params).fetchone()
    assert row is not None
    settle_after_finish(sessions, job_id=shard.job_id, row=row)  # as finish_committed does
