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

import uuid
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
from models.db.leases import cancelled_query
from models.domain.cells import Cell

_DIALECT = postgresql.psycopg.dialect(paramstyle="pyformat")  # type: ignore[no-untyped-call]


def compiled_statement(statement: ClauseElement) -> tuple[str, dict[str, Any]]:
    """The statement as psycopg takes it, and the values it binds itself (an IN list
    rendered as one placeholder per value it was built with)."""
    compiled = statement.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    return str(compiled), dict(compiled.params)


_CLAIM, _ = compiled_statement(CLAIM_CELLS_SQL)
_FINISH, _ = compiled_statement(FINISH_ASYNC_SQL)
# The GPU worker's check before it uploads (worker/shard_writer.py), compiled from
# models.db.leases.cancelled_jobs' own query.
_PLACEHOLDER = uuid.UUID(int=0)
_CANCELLED, _CANCELLED_PARAMS = compiled_statement(cancelled_query([_PLACEHOLDER]))
_CANCELLED_KEY = next(k for k, v in _CANCELLED_PARAMS.items() if v == _PLACEHOLDER)


def lean_worker(
    i: int,
    url: str,
    sessions: sessionmaker[Session],
    model: str,
    clock: dict[str, float],
    tally: Tally,
    finish: str = "committed",
) -> None:
    """A simulated worker on its own plain connection (the module docstring). ``finish``
    "worker": the GPU worker's common record (its cancel check, then the finish with the
    ledger row and the device: models/db/record_attempt.py's one statement)."""
    name = f"sim-{i}"
    device = "simulated" if finish == "worker" else None
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as connection:

        def claim() -> tuple[ClaimedShard, list[Cell]] | None:
            return _claim(connection, model, name)

        def record(shard: ClaimedShard, results: list[CellResult]) -> None:
            if device is not None:
                params = {**_CANCELLED_PARAMS, _CANCELLED_KEY: shard.job_id}
                if connection.execute(_CANCELLED, params).fetchone() is not None:
                    return
            _finish(connection, sessions, shard, name, results, device)

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
    device: str | None,
) -> None:
    params = finish_params(
        FinishArgs(
            shard=shard, worker=name, results=results, failures=[], max_attempts=3, backoff_s=1
        ),
        device=device,
    )
    row = connection.execute(_FINISH, params).fetchone()
    assert row is not None
    settle_after_finish(sessions, job_id=shard.job_id, row=row)  # as finish_committed does
