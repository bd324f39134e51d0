"""farm_claim_shard v3: the claimers of one job no longer queue on its row (bench/fleet.py)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

from migrations.replaceable import SqlFunction, replace

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM_V2 = SqlFunction("farm_claim_shard", 2)
CLAIM_V3 = SqlFunction("farm_claim_shard", 3)


def upgrade() -> None:
    replace(CLAIM_V2, CLAIM_V3)


def downgrade() -> None:
    replace(CLAIM_V3, CLAIM_V2)
