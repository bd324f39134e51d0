"""quality tier per cell: the numerics it is rendered with (exact, standard, fast)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 15:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL for cells made before tiers: read back as "standard" (what auto rendered).
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quality_tier", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("quality_tier")
