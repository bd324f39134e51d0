"""items and shards without foreign keys to jobs: a trigger deletes a deleted job's

The foreign keys were checked once per inserted row: ~100 of the ~200 ms that
Postgres spent on a 10,000-cell COPY, ~25 of the ~75 ms of its 2,500 shards
(docs/PERFORMANCE.md). Cells and shards are only ever written in their job's
transaction, so the checks guarded nothing the code can get wrong; what they did on
delete (cascade) is one statement-level trigger on jobs instead.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 00:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CASCADE_FUNCTION = """
CREATE OR REPLACE FUNCTION farm_delete_job_items() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM items WHERE job_id IN (SELECT id FROM gone);
    DELETE FROM shards WHERE job_id IN (SELECT id FROM gone);
    RETURN NULL;
END
$fn$;
"""
CASCADE_TRIGGER = """
CREATE TRIGGER jobs_delete_items AFTER DELETE ON jobs
REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION farm_delete_job_items();
"""


def upgrade() -> None:
    for table in ("items", "shards"):
        with op.batch_alter_table(table) as batch:  # SQLite rebuilds the table
            batch.drop_constraint(f"fk_{table}_job_id_jobs", type_="foreignkey")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CASCADE_FUNCTION)
        op.execute(CASCADE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS jobs_delete_items ON jobs")
        op.execute("DROP FUNCTION IF EXISTS farm_delete_job_items()")
    for table in ("items", "shards"):
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_job_id_jobs", "jobs", ["job_id"], ["id"], ondelete="CASCADE"
            )
