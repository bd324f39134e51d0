"""What a worker needs to know of a shard's tenant, cached for a few seconds: its content
policy (the screening threshold) and how its metrics are labelled."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from models.db.policies import load_policy, tenant_name
from models.domain.policy import ContentPolicy

TTL_S = 10.0  # a changed policy reaches the workers within this


@dataclass(frozen=True)
class TenantView:
    policy: ContentPolicy
    metrics_label: str  # the tenant's name if its policy opts in, else a hash of its id


def hashed_label(tenant_id: uuid.UUID) -> str:
    return "t-" + hashlib.sha256(tenant_id.bytes).hexdigest()[:12]


class TenantCache:
    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = TTL_S) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self._views: dict[uuid.UUID, tuple[float, TenantView]] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: uuid.UUID) -> TenantView:
        now = time.monotonic()
        with self._lock:
            cached = self._views.get(tenant_id)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        with self.sessions() as session:
            policy = load_policy(session, tenant_id=tenant_id)
            name = tenant_name(session, tenant_id=tenant_id) if policy.metrics_by_name else None
        view = TenantView(policy, name or hashed_label(tenant_id))
        with self._lock:
            self._views[tenant_id] = (now, view)
        return view

    def policy(self, tenant_id: uuid.UUID) -> ContentPolicy:
        """Raises if the database is away: never screen as if there were no policy."""
        return self.get(tenant_id).policy
