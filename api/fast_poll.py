"""``GET /v1/jobs/{id}`` on Postgres without FastAPI: the one route clients call in a loop.

The FastAPI route (api/routes/jobs.py, api/poll.py) cost ~3.5 ms of CPU per poll:
middlewares, routing, dependency injection, a worker-thread hop, SQLAlchemy, and a
pool pre-ping round trip per checkout. ``FarmApi`` (api/main.py) hands a poll to this
front door before any of that: an async psycopg pool in the event loop (autocommit,
statements prepared unless FARM_DB_TRANSACTION_POOLER), one query, the same ``job_out``
view, ETag, error shape and access-log line. An unexpected error propagates to the
server (a plain 500, as FastAPI's own server-error middleware answers).

Anything it does not recognise — another path or method, an id that is not a UUID,
SQLite (embedded mode) — goes on to FastAPI. docs/PERFORMANCE.md has the numbers.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import psycopg
import redis.asyncio
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url
from starlette.types import Receive, Scope, Send

from api.auth import invalid_key, missing_key, parse_bearer
from api.errors import ApiError, error_response
from api.key_cache import KeyCache
from api.limits import RateLimiter
from api.metrics import log_request
from api.views import job_etag, job_out
from models.db.keys import hash_key
from models.db.poll import POLLED_JOB_SQL, TENANT_FOR_KEY_SQL, PolledJob
from models.infra.log_setup import log_context
from models.infra.settings import Settings

# At most this many Postgres connections per API process serve polls; more concurrent
# polls wait for one in the event loop (one query each: a connection is free in ~0.2 ms).
POLL_CONNECTIONS = 8
POLL_APPLICATION_NAME = "farm-api-poll"  # how these connections show in pg_stat_activity

_PATH = re.compile(r"/v1/jobs/([^/]+)")


def libpq_url(sqlalchemy_url: str) -> str | None:
    """The libpq form of a Postgres URL; None for other databases (no fast path)."""
    url = make_url(sqlalchemy_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class _LoopResources:
    """A pool (and a Redis client for the rate limit) bound to one event loop."""

    def __init__(self, conninfo: str, redis_url: str | None, *, prepare: bool) -> None:
        self.loop = asyncio.get_running_loop()
        connection_kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": POLL_APPLICATION_NAME,
        }
        if not prepare:  # behind a transaction pooler: psycopg must never prepare either
            connection_kwargs["prepare_threshold"] = None
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=POLL_CONNECTIONS,
            kwargs=connection_kwargs,
            open=False,
            name="poll",
        )
        self.redis = redis.asyncio.Redis.from_url(redis_url) if redis_url else None
        self.opened = asyncio.Lock()
        self.is_open = False

    async def open(self) -> None:
        async with self.opened:
            if not self.is_open:
                await self.pool.open(wait=False)
                self.is_open = True

    async def close(self) -> None:
        await self.pool.close()
        if self.redis is not None:
            await self.redis.aclose()


class PollFastPath:
    """Reads a polled job; ``FastPollMiddleware`` serves it. Closed by the app's lifespan."""

    def __init__(self, settings: Settings, *, key_cache: KeyCache, limiter: RateLimiter) -> None:
        self.conninfo = libpq_url(settings.sqlalchemy_url)
        # Named prepared statements live in one server connection; behind PgBouncer in
        # transaction mode the next poll may run on another ("_pg3_N does not exist") or
        # clash with another client's statement of the same name.
        self.prepare = not settings.db_transaction_pooler
        self.key_cache = key_cache
        self.limiter = limiter
        self._resources: _LoopResources | None = None

    @property
    def enabled(self) -> bool:
        return self.conninfo is not None

    async def _current(self) -> _LoopResources:
        # One pool per event loop: test clients run each app session in a new loop.
        resources = self._resources
        if resources is None or resources.loop is not asyncio.get_running_loop():
            assert self.conninfo is not None
            resources = _LoopResources(self.conninfo, self.limiter.redis_url, prepare=self.prepare)
            self._resources = resources
        if not resources.is_open:  # the lock only until the pool is open, not per poll
            await resources.open()
        return resources

    async def close(self) -> None:
        resources, self._resources = self._resources, None
        if resources is not None and resources.loop is asyncio.get_running_loop():
            await resources.close()

    async def job(self, key: str, job_id: uuid.UUID) -> PolledJob | None:
        """The caller's job: 401 for a bad key, 429 past the tenant's rate, None if not
        theirs or not there.

        No ping per checkout (a round trip each): a connection that Postgres dropped
        (a restart, a failover) fails its query instead; then the pool checks its idle
        connections, drops the dead ones, and the poll is tried once more.
        """
        resources = await self._current()
        try:
            return await self._read(resources, key, job_id)
        except psycopg.OperationalError:
            await resources.pool.check()
            return await self._read(resources, key, job_id)

    async def _read(
        self, resources: _LoopResources, key: str, job_id: uuid.UUID
    ) -> PolledJob | None:
        async with resources.pool.connection() as connection:
            tenant = await self._tenant(connection, key)
            await self.limiter.check_async(tenant, resources.redis)
            cursor = await connection.execute(
                POLLED_JOB_SQL, {"job_id": job_id, "tenant_id": tenant}, prepare=self.prepare
            )
            row = await cursor.fetchone()
            return None if row is None else PolledJob(*row)

    async def _tenant(self, connection: psycopg.AsyncConnection[Any], key: str) -> uuid.UUID:
        tenant = self.key_cache.get(key)
        if tenant is not None:
            return tenant
        cursor = await connection.execute(
            TENANT_FOR_KEY_SQL, {"key_hash": hash_key(key)}, prepare=self.prepare
        )
        row = await cursor.fetchone()
        if row is None:
            raise invalid_key()
        found: uuid.UUID = row[0]
        self.key_cache.put(key, found)
        return found


class PollFrontDoor:
    """Serves the polls it recognises (``polled``, then ``serve``); ``FarmApi`` hands
    every other request to FastAPI."""

    def __init__(self, fast_path: PollFastPath) -> None:
        self.fast_path = fast_path

    def polled(self, scope: Scope) -> tuple[str, uuid.UUID] | None:
        """The job id of a poll this door answers: as sent, and parsed."""
        if scope["type"] != "http" or scope["method"] != "GET" or not self.fast_path.enabled:
            return None
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            return None
        try:
            return match.group(1), uuid.UUID(match.group(1))
        except ValueError:
            return None  # FastAPI answers it (404), as it always has

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, polled: tuple[str, uuid.UUID]
    ) -> None:
        as_sent, job_id = polled
        started = time.perf_counter()
        status = 500  # what the server answers if this raises
        try:
            with log_context(job_id=str(job_id)):
                try:
                    status = await self._answer(scope, as_sent, job_id, send)
                except ApiError as exc:
                    response = error_response(exc.status, exc.message, exc.fields, exc.headers)
                    await response(scope, receive, send)
                    status = exc.status
        finally:
            log_request("GET", scope["path"], status, started=started, job_id=str(job_id))

    async def _answer(self, scope: Scope, as_sent: str, job_id: uuid.UUID, send: Send) -> int:
        authorization = if_none_match = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"if-none-match":
                if_none_match = value
        key = parse_bearer(authorization.decode("latin-1"))
        if key is None:
            raise missing_key()
        job = await self.fast_path.job(key, job_id)
        if job is None:
            raise ApiError(404, f"no job {as_sent!r}")
        etag = job_etag(job).encode()
        if if_none_match == etag:
            await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", etag)]})
            await send({"type": "http.response.body", "body": b""})
            return 304
        body = job_out(job).model_dump_json().encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"etag", etag),
            (b"cache-control", b"no-cache"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return 200
