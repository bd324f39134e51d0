"""The running counts' upkeep: rows of ``job_running`` at zero, swept by ``farm beat``.

The trigger that keeps the counts (farm_count_running, migration 0017) leaves a job's
row at zero rather than deleting it: a delete made the next claim of that job wait for
the deleting finisher's commit. A claim reads only the rows of the jobs it compares,
so rows at zero cost it nothing; they are swept here so the table stays the size of
the work in flight.
"""

from __future__ import annotations

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from models.db.tables import JobRunning

_TRIGGERS = ("shard_running_insert", "shard_running_update", "shard_running_delete")


def sweep_idle_counts(session: Session) -> int:
    """Delete the job rows at zero; returns how many. Safe beside the trigger: Postgres
    re-checks ``n = 0`` on a row a claim has just counted, and then leaves it, and a
    claim that finds no row inserts one."""
    result = session.execute(delete(JobRunning).where(JobRunning.n <= 0))
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_at_each_statement(session: Session) -> None:
    """For the rest of this transaction, count at each statement instead of at COMMIT.

    The counts move when a transaction commits, so a transaction that claims several
    shards ranks by the counts as they were when it began. The farm claims one shard
    per statement transaction (``statement_transactions``), where the two are the same;
    a transaction that claims several and must rank by its own claims (the tests that
    replay a backlog inside one transaction) calls this first. Nothing on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET CONSTRAINTS {', '.join(_TRIGGERS)} IMMEDIATE"))
