"""Merge the feature branches (campaigns, prompt axes, perf indexes) into one head.

New migrations revise 0006.

Revision ID: 0006
Revises: 0003, 0004, 0005
Create Date: 2026-11-24 22:07:39.900032
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0006"
down_revision: tuple[str, ...] = ("0003", "0004", "0005")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
