"""farm_finish_shard v2: a job's finishers no longer queue on its row (bench/fleet.py);
farm_claim_shard v4: the claim's job hint never waits (it deadlocked beside v2)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Sequence

from migrations.replaceable import SqlFunction, replace

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM_V3 = SqlFunction("farm_claim_shard", 3)
CLAIM_V4 = SqlFunction("farm_claim_shard", 4)
FINISH_V1 = SqlFunction("farm_finish_shard", 1)
FINISH_V2 = SqlFunction("farm_finish_shard", 2)


def upgrade() -> None:
    replace(CLAIM_V3, CLAIM_V4)
    replace(FINISH_V1, FINISH_V2)


def downgrade() -> None:
    replace(FINISH_V2, FINISH_V1)
    replace(CLAIM_V4, CLAIM_V3)
