"""What bench/fleet.py's simulated workers saw, per process, merged at the end."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field


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
