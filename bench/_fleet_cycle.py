"""A simulated GPU worker's schedule (bench/fleet.py): claim, render in no time, finish,
every ``period`` seconds, and what the workers saw, per process, merged at the end.
The claim and the finish are the caller's (the farm client or the lean one)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from models.db.claims import ClaimedShard
from models.db.finish import CellResult
from models.domain.cells import Cell

Claim = Callable[[], tuple[ClaimedShard, list[Cell]] | None]
Finish = Callable[[ClaimedShard, list[CellResult]], None]


@dataclass
class Tally:
    """What the workers saw inside the measured window (appends are thread-safe)."""

    claim_ms: list[float] = field(default_factory=list)
    finish_ms: list[float] = field(default_factory=list)
    tenants: Counter[uuid.UUID] = field(default_factory=Counter)
    images: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        self.claim_ms += other.claim_ms
        self.finish_ms += other.finish_ms
        self.tenants.update(other.tenants)
        self.images += other.images
        self.empty += other.empty
        self.errors += other.errors


def simulate(i: int, clock: dict[str, float], tally: Tally, claim: Claim, finish: Finish) -> None:
    """Worker ``i`` of ``clock["n"]``: its first tick staggered so the fleet's claims
    spread evenly, then one cycle per period (at once when late, as a GPU would)."""
    period, start, measure, stop = clock["period"], clock["start"], clock["measure"], clock["stop"]
    tick = start + period * i / clock["n"]
    while tick < stop:
        time.sleep(max(0.0, tick - time.monotonic()))
        tick += period
        try:
            t0 = time.perf_counter()
            claimed = claim()
            t1 = time.perf_counter()
            if claimed is None:
                tally.empty.append(1)
                continue
            shard, cells = claimed
            results = [CellResult(c.index, f"sim/{c.index}", "0" * 64, None, 0) for c in cells]
            finish(shard, results)
            t2 = time.perf_counter()
        except Exception as exc:  # reported, never hidden: the run counts as failed
            tally.errors.append(repr(exc)[:300])
            continue
        if measure <= time.monotonic() < stop:  # done inside the window: what it sustained
            tally.claim_ms.append((t1 - t0) * 1000)
            tally.finish_ms.append((t2 - t1) * 1000)
            tally.tenants[shard.tenant_id] += 1
            tally.images.append(len(results))
