"""Abuse resistance at the HTTP layer: request body size and per-tenant request rate.

Every refusal is a 413 or a 429 with ``Retry-After``, in the API's error shape. The
per-tenant cell quotas are the submit path's (models/service/submit.py).
"""

from __future__ import annotations

import threading
import time
import uuid

import redis
import redis.asyncio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_response
from models.domain.spec import FieldError


class BodySizeLimit:
    """413 for bodies over ``max_bytes``, whether Content-Length says so or the stream does."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            f"request body is larger than {self.max_bytes} bytes",
            [FieldError("body", f"at most {self.max_bytes} bytes")],
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class RateLimiter:
    """Requests per second per tenant, in a fixed one-second window.

    With a Redis broker the window is shared by every API replica; without one
    (embedded mode) it is per process.
    """

    def __init__(self, *, per_s: int, redis_url: str) -> None:
        self.per_s = per_s
        self.redis_url = redis_url if redis_url.startswith("redis") else None
        self._redis = redis.Redis.from_url(self.redis_url) if self.redis_url else None
        self._local: dict[tuple[uuid.UUID, int], int] = {}
        self._lock = threading.Lock()

    def check(self, tenant: uuid.UUID) -> None:
        if self.per_s <= 0:
            return
        if self._redis is None:
            self._admit(self._count_locally(tenant))
            return
        pipe = self._redis.pipeline()
        key = _window_key(tenant)
        pipe.incr(key)
        pipe.expire(key, 2)
        self._admit(int(pipe.execute()[0]))

    async def check_async(self, tenant: uuid.UUID, client: redis.asyncio.Redis | None) -> None:
        """``check`` without blocking the event loop; ``client`` is an async client on
        ``redis_url`` (one per event loop), None where there is no Redis."""
        if self.per_s <= 0:
            return
        if client is None:
            self._admit(self._count_locally(tenant))
            return
        key = _window_key(tenant)
        async with client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            self._admit(int((await pipe.execute())[0]))

    def _count_locally(self, tenant: uuid.UUID) -> int:
        second = int(time.time())
        with self._lock:
            count = self._local.get((tenant, second), 0) + 1
            self._local = {k: v for k, v in self._local.items() if k[1] >= second - 1}
            self._local[(tenant, second)] = count
        return count

    def _admit(self, count: int) -> None:
        if count > self.per_s:
            raise ApiError(
                429,
                f"more than {self.per_s} requests per second for this tenant",
                headers={"Retry-After": "1"},
            )


def _window_key(tenant: uuid.UUID) -> str:
    return f"farm:rate:{tenant}:{int(time.time())}"
