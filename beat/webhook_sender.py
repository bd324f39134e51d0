"""Sending webhook deliveries: signed POSTs, per-attempt timeouts, retries with backoff.

Several deliveries are in flight at once (``FARM_WEBHOOK_CONCURRENCY``) and a
slot is refilled as soon as one finishes, so a receiver that hangs until its
timeout holds one slot, never the others. Each attempt is one POST to a checked
address (beat/webhook_http.py), signed with the tenant's secrets in both formats
(models/domain/webhook_signing.py). 2xx is success; a timeout, a connection error,
408, 429 and 5xx are retried with exponential backoff and jitter until
``FARM_WEBHOOK_MAX_AGE_S`` after the event; anything else is given up at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from beat.webhook_http import HttpResult, post
from models.db.outbox import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedDelivery,
    claim_due,
    record_attempt,
    render_body,
)
from models.db.tables import utcnow
from models.domain.webhook_signing import signature_headers
from models.infra.encryption import SecretBox
from models.infra.settings import Settings
from models.service.webhook_keys import SecretsUnreadable, signing_secrets

__all__ = ["Deliverer", "HttpResult", "backoff_s", "classify"]

log = logging.getLogger(__name__)

USER_AGENT = "animagine-farm-webhooks/1"
RETRYABLE_CODES = frozenset({408, 429})


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
        self.box = SecretBox.from_settings(settings)

    def fill(self, now: datetime | None = None) -> list[Future[None]]:
        """Claim as many due deliveries as there are free slots and start them."""
        self.inflight = {f for f in self.inflight if not f.done()}
        free = self.settings.webhook_concurrency - len(self.inflight)
        if free <= 0:
            return []
        at = now or self.clock()
        with self.sessions.begin() as session:
            claimed = claim_due(session, now=at, limit=free, lease_s=self.lease_s)
            secrets = {t: self._secrets(session, t) for t in {c.tenant_id for c in claimed}}
        started = [
            self.executor.submit(self._deliver, c, secrets[c.tenant_id], now) for c in claimed
        ]
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

    def _secrets(self, session: Session, tenant: uuid.UUID) -> list[str] | str:
        """The tenant's signing secrets, or why there are none: one tenant's secret that
        the configured keys cannot decrypt holds up its own deliveries, not the others'."""
        try:
            return signing_secrets(session, box=self.box, tenant_id=tenant, now=utcnow())
        except SecretsUnreadable as exc:
            log.error("%s", exc)
            return f"not signed: {exc}"

    def _deliver(
        self, delivery: ClaimedDelivery, secrets: list[str] | str, now: datetime | None
    ) -> None:
        try:
            self._attempt(delivery, secrets, now)
        except Exception:  # never lose the thread; the lease brings the row back
            log.exception("webhook delivery %s failed unexpectedly", delivery.id)

    def _attempt(
        self, delivery: ClaimedDelivery, secrets: list[str] | str, now: datetime | None
    ) -> None:
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
        }
        if not isinstance(secrets, str):
            stamp = int(time.time())
            signed = signature_headers(
                secrets, msg_id=str(delivery.event_id), timestamp=stamp, body=body
            )
            headers.update(signed)
        started_at = now or self.clock()
        t0 = time.perf_counter()
        result = (
            HttpResult(None, secrets)  # never sent unsigned: retried, like a network error
            if isinstance(secrets, str)
            else post(
                delivery.url,
                body,
                headers,
                timeout_s=self.settings.webhook_timeout_s,
                allow_private=self.settings.webhook_allow_private,
            )
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
