"""LoRA adapters: each cell's LoRA set and lora_sets value, each shard's adapter key, and
farm_claim_shard v2 (the claim prefers shards whose LoRA set the worker has active)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.replaceable import SqlFunction, replace

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM_V1 = SqlFunction("farm_claim_shard", 1)
CLAIM_V2 = SqlFunction("farm_claim_shard", 2)


def upgrade() -> None:
    # Nullable cells' columns rewrite no row. The shards' default is a constant: Postgres
    # (11+) stores it once in the catalog, not in every existing row.
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("loras", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("lora_sets", sa.JSON(), nullable=True))
    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("adapters", sa.Text(), nullable=False, server_default=""))
    replace(CLAIM_V1, CLAIM_V2)


def downgrade() -> None:
    replace(CLAIM_V2, CLAIM_V1)
    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.drop_column("adapters")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("lora_sets")
        batch_op.drop_column("loras")
