"""The GPU-second ledger's rules: a cell's share of its pipeline call, calendar months,
and the shape of a usage report.

A worker times each shard's pipeline call(s) and every cell of the shard costs an equal
share of it (they render together, at one size); the shares add up to the measured
time exactly. A tenant's monthly budget counts the ledger's rows of the current
calendar month in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

GroupBy = Literal["day", "job", "model"]


def shares_ms(total_ms: int, cells: int) -> list[int]:
    """``total_ms`` split over ``cells`` equal shares that add up to it exactly."""
    if cells <= 0:
        return []
    base, extra = divmod(max(0, total_ms), cells)
    return [base + (1 if i < extra else 0) for i in range(cells)]


def month_start(now: datetime) -> datetime:
    """The first instant of ``now``'s calendar month, in UTC."""
    now = now.astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime) -> datetime:
    start = month_start(now)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)
