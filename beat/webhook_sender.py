"""Sending webhook deliveries: signed POSTs, per-attempt timeouts, retries with backoff.

Several deliveries are in flight at once (``FARM_WEBHOOK_CONCURRENCY``) and a
slot is refilled as soon as one finishes, so a receiver that hangs until its
timeout holds one slot, never the others. Each attempt connects only to the
addresses its host resolves to *at that moment*, after checking them
(``models.domain.webhook_urls.resolve_public``): DNS rebinding cannot reach inside.
Redirects are not followed. 2xx is success; a timeout, a connection error,
408, 429 and 5xx are retried with exponential backoff and jitter until
``FARM_WEBHOOK_MAX_AGE_S`` after the event; anything else is given up at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpcore
from sqlalchemy.orm import Session, sessionmaker

from models.db.outbox import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedDelivery,
    claim_due,
    record_attempt,
    render_body,
)
from models.db.tables import utcnow
from models.domain.webhook_signing import SIGNATURE_HEADER, sign
from models.domain.webhook_urls import UnsafeAddress, resolve_public
from models.infra.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = "animagine-farm-webhooks/1"
SNIPPET_BYTES = 300  # of a refusing receiver's body, kept with the attempt
RETRYABLE_CODES = frozenset({408, 429})


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, then connects to exactly those addresses."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve_public(host, port, allow_private=self.allow_private)
        except UnsafeAddress:
            raise
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are never sent to a unix socket")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@dataclass(frozen=True)
class HttpResult:
    status_code: int | None
    error: str | None
    retry_after_s: float | None = None
    permanent: bool = False  # refused before sending: retrying cannot help


def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout_s: float, allow_private: bool
) -> HttpResult:
    """One POST on a fresh connection; never raises for anything the network does."""
    timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
    backend = GuardedBackend(allow_private=allow_private)
    try:
        with (
            httpcore.ConnectionPool(network_backend=backend, max_connections=1) as pool,
            pool.stream(
                "POST",
                url,
                headers=list(headers.items()),
                content=body,
                extensions={"timeout": timeouts},
            ) as response,
        ):
            code = response.status
            if 200 <= code < 300:
                return HttpResult(code, None)
            snippet = b""
            for chunk in response.iter_stream():
                snippet += chunk
                if len(snippet) >= SNIPPET_BYTES:
                    break
            text = snippet[:SNIPPET_BYTES].decode("utf-8", "replace").strip()
            return HttpResult(
                code,
                f"HTTP {code}: {text}" if text else f"HTTP {code}",
                _retry_after(response.headers),
            )
    except UnsafeAddress as exc:
        return HttpResult(None, f"refused: {exc}", permanent=True)
    except httpcore.UnsupportedProtocol as exc:
        return HttpResult(None, f"refused: {exc}", permanent=True)
    except httpcore.TimeoutException as exc:
        return HttpResult(None, f"timeout after {timeout_s:g} s ({type(exc).__name__})")
    except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
        return HttpResult(None, f"{type(exc).__name__}: {exc}")


def _retry_after(headers: list[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name.lower() == b"retry-after" and value.strip().isdigit():
            return float(value.strip())
    return None


def backoff_s(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential (base, 2·base, 4·base, ... capped), with "equal jitter": [d/2, d)."""
    delay = min(max_s, base_s * 2.0 ** min(attempt - 1, 60))
    return delay / 2 + rng.uniform(0, delay / 2)


def classify(
    result: HttpResult,
    *,
    attempt: int,
    created_at: datetime,
    started_at: datetime,
    duration_ms: int,
    settings: Settings,
    rng: random.Random,
) -> AttemptRecord:
    """Success, retry at a time, or give up: the outcome of one attempt."""
    code = result.status_code

    def record(outcome: AttemptOutcome, error: str | None, at: datetime | None) -> AttemptRecord:
        return AttemptRecord(started_at, duration_ms, code, error, outcome, at)

    if code is not None and 200 <= code < 300:
        return record(AttemptOutcome.SUCCEEDED, None, None)
    retryable = (code is None and not result.permanent) or (
        code is not None and (code in RETRYABLE_CODES or code >= 500)
    )
    if not retryable:
        return record(AttemptOutcome.FAILED, result.error, None)
    delay = backoff_s(
        attempt,
        base_s=settings.webhook_backoff_base_s,
        max_s=settings.webhook_backoff_max_s,
        rng=rng,
    )
    if result.retry_after_s is not None:
        delay = max(delay, min(result.retry_after_s, settings.webhook_backoff_max_s))
    next_at = started_at + timedelta(seconds=delay)
    if next_at > created_at + timedelta(seconds=settings.webhook_max_age_s):
        error = f"{result.error}; gave up after {attempt} attempts"
        return record(AttemptOutcome.FAILED, error, None)
    return record(AttemptOutcome.RETRY, result.error, next_at)


class Deliverer:
    """Claims due deliveries and keeps up to ``webhook_concurrency`` of them in flight."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.rng = random.Random()
        self.executor = ThreadPoolExecutor(
            max_workers=settings.webhook_concurrency, thread_name_prefix="webhook"
        )
        self.inflight: set[Future[None]] = set()
        # An attempt can spend a timeout on connect, write and read each; DNS on top.
        self.lease_s = settings.webhook_timeout_s * 3 + 30

    def fill(self, now: datetime | None = None) -> list[Future[None]]:
        """Claim as many due deliveries as there are free slots and start them."""
        self.inflight = {f for f in self.inflight if not f.done()}
        free = self.settings.webhook_concurrency - len(self.inflight)
        if free <= 0:
            return []
        at = now or self.clock()
        with self.sessions.begin() as session:
            claimed = claim_due(session, now=at, limit=free, lease_s=self.lease_s)
        started = [self.executor.submit(self._deliver, c, now) for c in claimed]
        self.inflight.update(started)
        return started

    def deliver_due(self, now: datetime | None = None) -> int:
        """Deliver everything due at ``now`` and wait for it (tests, and a final drain)."""
        count = 0
        while started := self.fill(now):
            count += len(started)
            wait(started)
        return count

    def run(self, stop: threading.Event, *, poll_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                self.fill()
            except Exception:  # the database is away: try again on the next poll
                log.exception("claiming webhook deliveries failed")
            if self.inflight:
                wait(self.inflight, timeout=poll_s, return_when=FIRST_COMPLETED)
            else:
                stop.wait(poll_s)

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    def _deliver(self, delivery: ClaimedDelivery, now: datetime | None) -> None:
        try:
            self._attempt(delivery, now)
        except Exception:  # never lose the thread; the lease brings the row back
            log.exception("webhook delivery %s failed unexpectedly", delivery.id)

    def _attempt(self, delivery: ClaimedDelivery, now: datetime | None) -> None:
        body = render_body(
            event_id=delivery.event_id,
            event=delivery.event,
            created_at=delivery.created_at,
            payload=delivery.payload,
            base_url=self.settings.public_base_url,
        )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Farm-Event": delivery.event,
            "Farm-Event-Id": str(delivery.event_id),
            "Farm-Delivery-Attempt": str(delivery.attempt),
            SIGNATURE_HEADER: sign(delivery.secret, int(time.time()), body),
        }
        started_at = now or self.clock()
        t0 = time.perf_counter()
        result = post(
            delivery.url,
            body,
            headers,
            timeout_s=self.settings.webhook_timeout_s,
            allow_private=self.settings.webhook_allow_private,
        )
        duration_ms = int((time.perf_counter() - t0) * 1000)
        record = classify(
            result,
            attempt=delivery.attempt,
            created_at=delivery.created_at,
            started_at=started_at,
            duration_ms=duration_ms,
            settings=self.settings,
            rng=self.rng,
        )
        with self.sessions.begin() as session:
            record_attempt(session, delivery=delivery, record=record)
        log.info(
            "webhook %s %s -> %s: %s (attempt %d, %d ms)",
            delivery.event,
            delivery.event_id,
            delivery.url,
            record.outcome.value,
            delivery.attempt,
            duration_ms,
        )
