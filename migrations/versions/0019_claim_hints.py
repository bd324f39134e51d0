"""farm_claim_shard v6: both fair-share hints under a 1 ms lock_timeout, so a claim never
waits for them (deadlocks between claims on one tenant's row: bench/fleet.py --finish
worker)

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from collections.abc import Sequence

from migrations.replaceable import SqlFunction, replace

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM_V5 = SqlFunction("farm_claim_shard", 5)
CLAIM_V6 = SqlFunction("farm_claim_shard", 6)


def upgrade() -> None:
    replace(CLAIM_V5, CLAIM_V6)


def downgrade() -> None:
    replace(CLAIM_V6, CLAIM_V5)
