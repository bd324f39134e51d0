"""bench/fleet.py's simulated GPU workers: a process runs a thread per worker, each with
its own connection through PgBouncer, claiming and finishing as the farm does."""

from __future__ import annotations

import multiprocessing
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from bench._fleet_cycle import Tally, simulate
from bench._fleet_lean import lean_worker
from models.db.claim_cells import claim_with_cells
from models.db.claims import ClaimedShard
from models.db.finish import CellResult, finish_attempt
from models.db.finish_committed import finish_committed
from models.db.finish_sql import FinishArgs
from models.db.leases import cancelled_jobs
from models.db.record_attempt import record_attempt
from models.db.session import make_engine, make_session_factory, statement_transactions
from models.domain.cells import Cell
from models.infra.settings import normalize_database_url


def run_part(
    url: str,
    ids: list[int],
    model: str,
    clock: dict[str, float],
    results: multiprocessing.Queue[tuple[Tally, float]],
    finish: str,
    client: str = "farm",
) -> None:
    """One simulator process: a thread per worker in ``ids``, each with its own connection.
    Reports its tally and the CPU it used inside the measured window. ``client``: "farm"
    (the farm's functions, Session and all) or "lean" (bench/_fleet_lean.py)."""
    lean = client == "lean"
    engine = make_engine(
        normalize_database_url(url),
        # One connection per simulated worker, held for the run; the lean client has its
        # own and uses these for the settle of a completed job only.
        pool_size=2 if lean else len(ids),
        max_overflow=2 if lean else 0,
        prepared_statements=False,  # transaction pooling
        pre_ping=False,  # as the worker: farm.engine_kwargs("worker")
    )
    sessions = make_session_factory(engine)
    tally = Tally()
    threads = [
        threading.Thread(
            target=lean_worker if lean else worker,
            args=(i, url, sessions, model, clock, tally, finish)
            if lean
            else (i, sessions, model, clock, tally, finish),
            daemon=True,
        )
        for i in ids
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, clock["measure"] - time.monotonic()))
    cpu = time.process_time()
    time.sleep(max(0.0, clock["stop"] - time.monotonic()))
    cpu = time.process_time() - cpu
    for thread in threads:
        thread.join(600)
    engine.dispose()
    results.put((tally, cpu))


def worker(
    i: int,
    sessions: sessionmaker[Session],
    model: str,
    clock: dict[str, float],
    tally: Tally,
    finish: str = "committed",
) -> None:
    """A simulated worker through the farm's own functions (Session and all)."""
    name = f"sim-{i}"

    def claim() -> tuple[ClaimedShard, list[Cell]] | None:
        with statement_transactions(sessions) as session:  # as the worker claims
            return claim_with_cells(session, model=model, worker=name, lease_s=600)

    def record(shard: ClaimedShard, results: list[CellResult]) -> None:
        args = FinishArgs(
            shard=shard, worker=name, results=results, failures=[], max_attempts=3, backoff_s=1
        )
        if finish == "committed":  # a statement transaction: the counters are not held
            finish_committed(sessions, **args)
            return
        if finish == "worker":  # as worker/shard_writer.py records a shard
            with statement_transactions(sessions) as session:
                if cancelled_jobs(session, job_ids=[shard.job_id]):
                    return
            record_attempt(
                sessions, analyses=[], device="simulated", progress_min_interval_s=30, **args
            )
            return
        with sessions.begin() as session:  # one transaction, the finish alone
            finish_attempt(session, **args)

    simulate(i, clock, tally, claim, record)
