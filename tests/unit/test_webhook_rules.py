"""Webhook rules without a network: URL checks, signatures, retry decisions."""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beat.webhook_sender import HttpResult, backoff_s, classify
from models.db.outbox import AttemptOutcome
from models.domain.webhook_signing import sign, verify
from models.domain.webhook_urls import check_url_syntax, private_url_reason
from models.infra.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "CAMPAIGNS.md"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "scheme 'ftp' is not allowed"),
        ("not a url", "spaces"),
        ("example.com/hook", "must be an http or https URL"),
        ("http:///path-only", "no host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com/" + "a" * 2000, "longer than"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        check_url_syntax(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.1/",  # the kernel reads this as 127.0.0.1
        "http://2130706433/",
        "http://0x7f000001/",
        "http://10.1.2.3/",
        "http://192.168.0.10:8080/",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://localhost:8000/",
        "http://api.localhost/",
    ],
)
def test_internal_addresses_are_refused_at_submission(url: str) -> None:
    check_url_syntax(url)
    assert private_url_reason(url, allow_private=False) is not None
    assert private_url_reason(url, allow_private=True) is None


@pytest.mark.parametrize(
    "url", ["https://example.com/hook", "http://93.184.215.14:8080/x", "https://[2606:4700::1]/"]
)
def test_public_urls_pass(url: str) -> None:
    assert check_url_syntax(url) == url
    assert private_url_reason(url, allow_private=False) is None


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"id":"e1","type":"job.completed"}'
    now = int(time.time())
    header = sign("whsec_test", now, body)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert verify("whsec_test", header, body, now=now)
    assert not verify("whsec_other", header, body, now=now)
    assert not verify("whsec_test", header, body + b" ", now=now)
    assert not verify("whsec_test", header, body, now=now + 301)  # replayed too late
    assert not verify("whsec_test", "v1=abc", body, now=now)


def test_the_documented_verification_snippet_works() -> None:
    """docs/CAMPAIGNS.md's Python snippet, run as written, accepts ours and refuses others."""
    text = DOCS.read_text()
    match = re.search(r"```python\n(# verify-snippet.*?)```", text, re.DOTALL)
    assert match is not None, "the verification snippet is missing from docs/CAMPAIGNS.md"
    namespace: dict[str, object] = {}
    exec(match.group(1), namespace)
    check = namespace["verify_farm_signature"]
    assert callable(check)
    body = b'{"a":1}'
    header = sign("whsec_x", int(time.time()), body)
    assert check("whsec_x", header, body) is True
    assert check("whsec_x", header, b'{"a":2}') is False
    assert check("whsec_x", sign("whsec_x", int(time.time()) - 3600, body), body) is False


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    for attempt, full in [(1, 10), (2, 20), (3, 40), (10, 300), (100, 300)]:
        delays = [backoff_s(attempt, base_s=10, max_s=300, rng=rng) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jittered


T = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (HttpResult(200, None), AttemptOutcome.SUCCEEDED),
        (HttpResult(204, None), AttemptOutcome.SUCCEEDED),
        (HttpResult(500, "HTTP 500"), AttemptOutcome.RETRY),
        (HttpResult(503, "HTTP 503"), AttemptOutcome.RETRY),
        (HttpResult(408, "HTTP 408"), AttemptOutcome.RETRY),
        (HttpResult(429, "HTTP 429"), AttemptOutcome.RETRY),
        (HttpResult(None, "timeout"), AttemptOutcome.RETRY),
        (HttpResult(None, "ConnectError"), AttemptOutcome.RETRY),
        (HttpResult(400, "HTTP 400"), AttemptOutcome.FAILED),
        (HttpResult(404, "HTTP 404"), AttemptOutcome.FAILED),
        (HttpResult(410, "HTTP 410"), AttemptOutcome.FAILED),
        (HttpResult(301, "HTTP 301"), AttemptOutcome.FAILED),  # redirects are not followed
        (HttpResult(None, "refused: private", permanent=True), AttemptOutcome.FAILED),
    ],
)
def test_what_is_retried(result: HttpResult, outcome: AttemptOutcome) -> None:
    record = classify(
        result,
        attempt=1,
        created_at=T,
        started_at=T,
        duration_ms=5,
        settings=Settings(),
        rng=random.Random(0),
    )
    assert record.outcome is outcome
    assert (record.next_attempt_at is not None) == (outcome is AttemptOutcome.RETRY)


def test_retries_stop_at_the_max_age_and_honour_retry_after() -> None:
    settings = Settings(webhook_max_age_s=3600, webhook_backoff_base_s=60)
    late = classify(
        HttpResult(500, "HTTP 500"),
        attempt=3,
        created_at=T,
        started_at=T + timedelta(minutes=59),
        duration_ms=5,
        settings=settings,
        rng=random.Random(0),
    )
    assert late.outcome is AttemptOutcome.FAILED
    assert late.error is not None and "gave up after 3 attempts" in late.error
    waited = classify(
        HttpResult(429, "HTTP 429", retry_after_s=900),
        attempt=1,
        created_at=T,
        started_at=T,
        duration_ms=5,
        settings=settings,
        rng=random.Random(0),
    )
    assert waited.next_attempt_at == T + timedelta(seconds=900)
