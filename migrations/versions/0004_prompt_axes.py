"""prompt axes and hi-res fix: per-cell Prompt S/R value, emphasis mode, hi-res pass

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-24 20:46:11.996772
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prompt_replace", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("emphasis", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("hires_scale", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("hires_strength", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("hires_steps", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("hires_steps")
        batch_op.drop_column("hires_strength")
        batch_op.drop_column("hires_scale")
        batch_op.drop_column("emphasis")
        batch_op.drop_column("prompt_replace")
