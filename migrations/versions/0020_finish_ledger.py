"""farm_finish_shard v3: the ledger row and the device in the finish, so that the GPU
worker records a common shard in one statement (bench/fleet.py --finish worker)

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from collections.abc import Sequence

from migrations.replaceable import SqlFunction, replace

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINISH_V2 = SqlFunction("farm_finish_shard", 2)
FINISH_V3 = SqlFunction("farm_finish_shard", 3)


def upgrade() -> None:
    replace(FINISH_V2, FINISH_V3)


def downgrade() -> None:
    replace(FINISH_V3, FINISH_V2)
