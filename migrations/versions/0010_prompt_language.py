"""prompt language: each cell's style and combinatorial wildcard values

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding them rewrites no row, however large the table.
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("style", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("wildcard_values", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("wildcard_values")
        batch_op.drop_column("style")
