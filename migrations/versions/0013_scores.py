"""scores per cell: what the operator's scorer said of the decoded image (higher is better)

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: not scored (no scorer configured, or the cell is not rendered yet).
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("score_label", sa.String(length=32), nullable=True))
    # ?order=score pages a job's images best first.
    op.create_index("ix_items_job_score", "items", ["job_id", "score"])


def downgrade() -> None:
    op.drop_index("ix_items_job_score", table_name="items")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("score_label")
        batch_op.drop_column("score")
