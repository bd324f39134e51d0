"""The poll hot path, ``GET /v1/jobs/{id}``: one worker-thread hop, one query.

- The API key's tenant is remembered for a few seconds (``KeyCache``): a poll need not
  look its key up. A revoked key keeps working for at most ``FARM_API_KEY_CACHE_S``
  (default 5 s; 0 turns the cache off) in each API process. Unknown keys are never
  cached, so a new key works at once.
- Only the status columns are read, in autocommit (no BEGIN / ROLLBACK round trips):
  not the job's spec and resolved grid (JSON that grows with the grid).
- At most ``POLL_THREADS`` polls hold a database connection at once; the others wait
  in the event loop. With FastAPI's 40 threads, 32 pollers would take the pool past its
  10 kept connections, and each overflow connection is opened and closed per request
  (a new Postgres backend each time).

docs/PERFORMANCE.md has the numbers.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session, load_only

from api.deps import AppState
from api.errors import ApiError
from models.db.keys import hash_key, tenant_for_key
from models.db.tables import Job

MAX_KEYS = 10_000
POLL_THREADS = 8  # below the engine's pool_size (10): no overflow connections


class KeyCache:
    def __init__(self, *, ttl_s: float, max_keys: int = MAX_KEYS) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._entries: OrderedDict[str, tuple[uuid.UUID, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> uuid.UUID | None:
        digest = hash_key(key)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or entry[1] < time.monotonic():
                return None
            return entry[0]

    def put(self, key: str, tenant: uuid.UUID) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._entries[hash_key(key)] = (tenant, time.monotonic() + self.ttl_s)
            self._entries.move_to_end(hash_key(key))
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)


def bearer_key(request: Request) -> str:
    """The request's API key, or 401 in the API's error shape."""
    return parse_bearer(request.headers.get("authorization", ""))


def parse_bearer(authorization: str) -> str:
    """The key of an ``Authorization: Bearer <key>`` header, or 401."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key.strip()


def cached_tenant(cache: KeyCache, session: Session, key: str) -> uuid.UUID:
    tenant = cache.get(key)
    if tenant is None:
        tenant = tenant_for_key(session, key=key)
        if tenant is None:
            raise ApiError(
                401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        cache.put(key, tenant)
    return tenant


# What job_out and job_etag read.
_POLL_COLUMNS = (
    Job.id,
    Job.status,
    Job.total,
    Job.done,
    Job.failed,
    Job.cancelled,
    Job.created_at,
    Job.started_at,
    Job.finished_at,
    Job.error,
    Job.name,
    Job.labels,
    Job.model,
    Job.priority,
    Job.version,
)


def key_cache(request: Request) -> KeyCache:
    cache: KeyCache = request.app.state.key_cache  # made by create_app
    return cache


def polled_job(request: Request, job_id: str) -> Job:
    """The caller's job with its status columns loaded (run in a worker thread): 401 for
    a bad key, 429 past the tenant's rate, 404 for another tenant's job or no job."""
    state: AppState = request.app.state.farm
    key = bearer_key(request)
    # Autocommit: a read of one row needs no BEGIN and no ROLLBACK round trips.
    engine = state.sessions.kw["bind"]
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        Session(bind=connection) as session,
    ):
        tenant = cached_tenant(key_cache(request), session, key)
        state.limiter.check(tenant)
        try:
            parsed = uuid.UUID(job_id)
        except ValueError:
            raise ApiError(404, f"no job {job_id!r}") from None
        job = session.scalar(
            select(Job)
            .options(load_only(*_POLL_COLUMNS))
            .where(Job.id == parsed, Job.tenant_id == tenant)
        )
    if job is None:
        raise ApiError(404, f"no job {job_id!r}")
    return job


async def load_polled_job(request: Request, job_id: str) -> Job:
    """``polled_job`` on a worker thread, at most ``POLL_THREADS`` at a time."""
    limiter: CapacityLimiter | None = getattr(request.app.state, "poll_limiter", None)
    if limiter is None:
        limiter = CapacityLimiter(POLL_THREADS)
        request.app.state.poll_limiter = limiter
    return await anyio.to_thread.run_sync(polled_job, request, job_id, limiter=limiter)
