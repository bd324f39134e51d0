"""tenant_running and job_running, running shards counted by triggers on shards;
farm_claim_shard v5 ranks by them and walks ix_shards_claim whatever the statistics say
(bench/fleet.py, 1,000 workers)

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.replaceable import SqlFunction, drop, install, replace

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM_V4 = SqlFunction("farm_claim_shard", 4)
CLAIM_V5 = SqlFunction("farm_claim_shard", 5)
COUNT_V1 = SqlFunction("farm_count_running", 1)

# Only rows entering or leaving 'running' fire the function: a claim, a finish, a lease
# that lapses, a cancel, a deleted job; every other shard write costs nothing more. They
# fire at COMMIT (constraint triggers, initially deferred): fired at the shard's UPDATE,
# they held the count rows through the rest of the transaction; a finisher held them
# while it queued for the job's counters, and the job's claims queued behind it
# (bench/fleet.py, one 100,000-cell job, 1,000 workers: 262 of 370 claims/s, p99 3.7 s).
# Taken at COMMIT, a count row is held for no longer than the commit, and as every
# transaction's last lock it closes no cycle with the job, shard and cell locks before
# it. (Slots, farm_count_running's header, spread what is left of the queueing.)
_TRIGGERS = {
    "shard_running_insert": "AFTER INSERT ON shards",
    "shard_running_update": "AFTER UPDATE OF status ON shards",
    "shard_running_delete": "AFTER DELETE ON shards",
}
_WHEN = {
    "shard_running_insert": "NEW.status = 'running'",
    "shard_running_update": "(OLD.status = 'running') IS DISTINCT FROM (NEW.status = 'running')",
    "shard_running_delete": "OLD.status = 'running'",
}


def upgrade() -> None:
    op.create_table(
        "tenant_running",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model", "tenant_id", "slot", name=op.f("pk_tenant_running")),
    )
    op.create_table(
        "job_running",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "model", "tenant_id", "job_id", "slot", name=op.f("pk_job_running")
        ),
    )
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's stepwise claim counts running shards itself
    install(COUNT_V1)
    # No claim or finish may run between the count and the triggers: they would be lost.
    op.execute("LOCK TABLE shards IN SHARE ROW EXCLUSIVE MODE")
    for name, event in _TRIGGERS.items():
        op.execute(
            f"CREATE CONSTRAINT TRIGGER {name} {event} DEFERRABLE INITIALLY DEFERRED"
            f" FOR EACH ROW WHEN ({_WHEN[name]}) EXECUTE FUNCTION farm_count_running()"
        )
    for table, key in (("tenant_running", "tenant_id"), ("job_running", "tenant_id, job_id")):
        op.execute(
            f"INSERT INTO {table} (model, {key}, slot, n)"
            f" SELECT model, {key}, id % 4, count(*) FROM shards WHERE status = 'running'"
            f" GROUP BY model, {key}, id % 4"
        )
    replace(CLAIM_V4, CLAIM_V5)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        replace(CLAIM_V5, CLAIM_V4)
        for name in _TRIGGERS:
            op.execute(f"DROP TRIGGER {name} ON shards")
        drop(COUNT_V1.name)
    op.drop_table("job_running")
    op.drop_table("tenant_running")
