"""claim and finish in one statement each: farm_claim_shard(), farm_finish_shard()

A claim was ~11-20 statements from Python (priority, loose index scans over tenants
and jobs, least-served comparisons, the job lock, three UPDATEs), each a round trip
while the GPU waited; recording a shard was five more, each ~1 ms of SQLAlchemy CPU on
the worker. These functions run the same steps inside Postgres; the stepwise Python
(models/db/fair_share.py, models/db/claims.py, models/db/finish.py) stays SQLite's
path, and tests/unit/test_claim_equivalence.py holds the two together.

Their text is version 1 of models/db/sql/farm_claim_shard/ and farm_finish_shard/
(migrations/replaceable.py says how a later migration replaces it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 23:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from migrations.replaceable import SqlFunction, drop, install

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM_V1 = SqlFunction("farm_claim_shard", 1)
FINISH_V1 = SqlFunction("farm_finish_shard", 1)


def upgrade() -> None:
    install(CLAIM_V1)
    install(FINISH_V1)


def downgrade() -> None:
    drop(FINISH_V1.name)
    drop(CLAIM_V1.name)
