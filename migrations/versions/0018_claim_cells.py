"""farm_claim_cells: the claim and the claimed shard's queued cells in one round trip
(bench/claim_cost.py)

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

from migrations.replaceable import SqlFunction, drop, install

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM_CELLS_V1 = SqlFunction("farm_claim_cells", 1)


def upgrade() -> None:
    install(CLAIM_CELLS_V1)


def downgrade() -> None:
    drop(CLAIM_CELLS_V1.name)
