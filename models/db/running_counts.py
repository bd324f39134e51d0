"""The running counts' upkeep: rows of ``job_running`` at zero, swept by ``farm beat``;
and the count rows a transaction that moves many shards will write, locked in key order.

The trigger that keeps the counts (farm_count_running, migration 0017) leaves a job's
row at zero rather than deleting it: a delete made the next claim of that job wait for
the deleting finisher's commit. A claim reads only the rows of the jobs it compares,
so rows at zero cost it nothing; they are swept here so the table stays the size of
the work in flight.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from models.db.tables import JobRunning, TenantRunning

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


def lock_counts_in_order(
    session: Session, *, tenant_ids: Collection[uuid.UUID], job_ids: Collection[uuid.UUID]
) -> None:
    """Lock now, in key order (every tenant's rows, then every job's), the count rows this
    transaction's shards will write at COMMIT. Call it after the transaction's last
    write of a running shard, in a transaction that moves several (a cancel, released
    leases).

    Why: at COMMIT the triggers take the count rows in the order the shards were
    written, which no statement controls; two such transactions over one tenant could
    take its slots in opposite orders and deadlock. A claim or a finish moves one shard
    (its tenant's row, then its job's): the same order as here. Only rows above zero: a
    shard leaving 'running' is counted in one, and rows at zero are the beat's sweep's,
    which deletes them in no order of its own. Nothing on SQLite."""
    if session.get_bind().dialect.name != "postgresql" or not tenant_ids:
        return
    tenants = sorted(set(tenant_ids))
    session.execute(
        select(TenantRunning.n)
        .where(TenantRunning.tenant_id.in_(tenants), TenantRunning.n > 0)
        .order_by(TenantRunning.model, TenantRunning.tenant_id, TenantRunning.slot)
        .with_for_update()
    ).all()
    session.execute(
        select(JobRunning.n)
        .where(
            JobRunning.tenant_id.in_(tenants),
            JobRunning.job_id.in_(sorted(set(job_ids))),
            JobRunning.n > 0,
        )
        .order_by(JobRunning.model, JobRunning.tenant_id, JobRunning.job_id, JobRunning.slot)
        .with_for_update()
    ).all()
