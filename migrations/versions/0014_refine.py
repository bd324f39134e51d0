"""refinements: a child cell's parent cell and the base image its hi-res pass started
from; a child job's parent and a parent's children

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: no existing row is rewritten.
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_job_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("parent_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("base_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_job_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("children", sa.JSON(), nullable=True))
    op.create_index("ix_jobs_parent_job_id", "jobs", ["parent_job_id"])
    # A campaign's automatic refinement, and the child job each run made.
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refine", sa.JSON(), nullable=True))
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refine_job_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_column("refine_job_id")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("refine")
    op.drop_index("ix_jobs_parent_job_id", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("children")
        batch_op.drop_column("parent_job_id")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("base_sha256")
        batch_op.drop_column("parent_index")
        batch_op.drop_column("parent_job_id")
