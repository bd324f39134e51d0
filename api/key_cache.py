"""API key -> tenant, remembered for a few seconds in each API process.

A poll need not look its key up in the database. A revoked key keeps working for at
most ``FARM_API_KEY_CACHE_S`` (default 5 s; 0 turns the cache off); unknown keys are
never cached, so a new key works at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from models.db.keys import hash_key

MAX_KEYS: Final = 10_000


class KeyCache:
    """key (hashed) -> tenant for ``ttl_s``, at most ``max_keys`` entries (LRU)."""

    def __init__(
        self,
        *,
        ttl_s: float,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self.clock = clock
        self._entries: OrderedDict[str, tuple[uuid.UUID, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> uuid.UUID | None:
        with self._lock:
            entry = self._entries.get(hash_key(key))
            if entry is None or entry[1] < self.clock():
                return None
            return entry[0]

    def put(self, key: str, tenant: uuid.UUID) -> None:
        if self.ttl_s <= 0:
            return
        digest = hash_key(key)
        with self._lock:
            self._entries[digest] = (tenant, self.clock() + self.ttl_s)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
