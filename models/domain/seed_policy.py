"""Which seeds a scheduled campaign run renders.

* ``fixed``: the spec's seeds, verbatim, every run: the same images each time
  unless the model or settings change (a ``-1`` in the spec still means "random",
  resolved when the grid is).
* ``new``: fresh random seeds every run, as many as the spec lists (or ``count``).
* ``date``: seeds derived from the run's *local* calendar date in the campaign's
  time zone: ``sha256("YYYY-MM-DD:i")``, first 4 bytes, big-endian. A run, a
  retry or a backfill for the same date renders the same seeds; another date
  renders others. The date is that of ``scheduled_for`` (the tick), not of the
  moment the run actually starts, so jitter or a late start never changes it.
  The seeds depend on the date only: two campaigns on the same date share them.

Seeds are in ``[0, 2**32 - 1]`` and distinct within a run (``new`` and ``date``
skip a repeat instead of rendering the same cell twice).
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from models.domain.schedule.instants import validate_timezone
from models.domain.spec import MAX_SEED

__all__ = ["SeedPolicy", "date_seed", "run_seeds"]


class SeedPolicy(StrEnum):
    FIXED = "fixed"
    NEW = "new"
    DATE = "date"


def date_seed(local_date: str, index: int) -> int:
    """The ``index``-th seed of a local date given as ``YYYY-MM-DD``."""
    digest = hashlib.sha256(f"{local_date}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _distinct(count: int, draw: Callable[[int], int]) -> list[int]:
    seeds: list[int] = []
    seen: set[int] = set()
    index = 0
    while len(seeds) < count:
        seed = draw(index)
        index += 1
        if seed not in seen:
            seen.add(seed)
            seeds.append(seed)
    return seeds


def run_seeds(
    policy: SeedPolicy | str,
    spec_seeds: list[int],
    scheduled_for: datetime,
    tz: ZoneInfo | str,
    *,
    count: int | None = None,
    rng: random.Random | None = None,
) -> list[int]:
    """The seeds one run of a campaign renders (see the module doc).

    ``count`` overrides how many seeds ``new`` and ``date`` produce (default: as
    many as ``spec_seeds``); for ``fixed`` it must be None or ``len(spec_seeds)``.
    ``rng`` makes ``new`` reproducible in tests; without it ``secrets`` is used.
    """
    policy = SeedPolicy(policy)
    if scheduled_for.tzinfo is None or scheduled_for.utcoffset() is None:
        raise ValueError("scheduled_for must be timezone-aware")
    zone = tz if isinstance(tz, ZoneInfo) else validate_timezone(tz)
    n = len(spec_seeds) if count is None else count
    if n < 1:
        raise ValueError("a run needs at least one seed")
    if policy is SeedPolicy.FIXED:
        if n != len(spec_seeds):
            raise ValueError(
                f"the fixed seed policy renders the spec's {len(spec_seeds)} seeds; "
                f"count={count} does not match"
            )
        return list(spec_seeds)
    if n > MAX_SEED + 1:
        raise ValueError(f"cannot draw {n} distinct seeds")
    if policy is SeedPolicy.NEW:
        if rng is not None:
            return _distinct(n, lambda _i: rng.randint(0, MAX_SEED))
        return _distinct(n, lambda _i: secrets.randbelow(MAX_SEED + 1))
    local_date = scheduled_for.astimezone(zone).date().isoformat()
    return _distinct(n, lambda i: date_seed(local_date, i))
