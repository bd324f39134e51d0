"""Webhook delivery to a real HTTP receiver on 127.0.0.1, from the outbox on real Postgres."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from beat.webhook_sender import Deliverer
from models.db.keys import tenant_for_key
from models.db.tables import utcnow
from models.db.webhook_tables import WebhookDelivery, WebhookSecret
from models.domain.webhook_signing import verify
from models.domain.webhook_urls import is_public
from models.infra.encryption import SecretBox
from models.infra.settings import Settings
from tests.conftest import ApiClient
from tests.webhook_receiver import Receiver, serve_receiver

MODEL = "campaign-test"  # no worker serves it: jobs here end by cancellation
SPEC: dict[str, Any] = {"prompts": ["1girl"], "seeds": [1, 2], "model": MODEL}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as state:
        yield state


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "models": {**settings.models, MODEL: "simulated:0"},
            "webhook_allow_private": True,  # the receiver is on loopback
            "webhook_backoff_base_s": 0.01,
            "webhook_backoff_max_s": 0.05,
            "webhook_timeout_s": 2.0,
            "public_base_url": "https://farm.example.com",
        }
    )


@pytest.fixture
def tenant(api: ApiClient, sessions: sessionmaker[Session]) -> Iterator[uuid.UUID]:
    with sessions() as session:
        tenant_id = tenant_for_key(session, key=api.key)
    assert tenant_id is not None
    yield tenant_id
    with sessions.begin() as session:  # no later sender in this database sees them
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id))


def finished_job(api: ApiClient, url: str) -> str:
    """A job with a webhook, cancelled: its job.completed is in the outbox."""
    job = api.client.post("/v1/jobs", json={**SPEC, "webhook_url": url}, headers=api.auth)
    assert job.status_code == 201, job.text
    job_id: str = job.json()["id"]
    assert api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.auth).status_code == 200
    return job_id


def deliveries(api: ApiClient, job_id: str) -> list[dict[str, Any]]:
    page = api.client.get(f"/v1/jobs/{job_id}/webhooks", headers=api.auth).json()
    items: list[dict[str, Any]] = page["items"]
    return items


def secret_of(sessions: sessionmaker[Session], tenant_id: uuid.UUID, settings: Settings) -> str:
    """The tenant's secret as stored: encrypted, never in plaintext."""
    with sessions() as session:
        row = session.scalars(
            select(WebhookSecret).where(WebhookSecret.tenant_id == tenant_id)
        ).one()
    assert row.secret is None and row.ciphertext is not None
    plaintext = SecretBox.from_settings(settings).decrypt(row.ciphertext)
    assert plaintext not in row.ciphertext
    return plaintext


@pytest.fixture
def deliverer(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[Deliverer]:
    sender = Deliverer(settings, sessions)
    yield sender
    sender.close()


def test_a_delivery_is_signed_and_recorded(
    api: ApiClient,
    tenant: uuid.UUID,
    receiver: Receiver,
    deliverer: Deliverer,
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    job_id = finished_job(api, receiver.url("/ok"))
    deliverer.deliver_due()
    [request] = receiver.on("/ok")
    secret = api.client.get("/v1/webhooks/secret", headers=api.auth).json()["secret"]
    assert secret == secret_of(sessions, tenant, settings)
    signature = request.headers["Farm-Signature"]
    assert verify(secret, signature, request.body, now=time.time())
    assert not verify(secret, signature, request.body.replace(b"cancelled", b"succeeded"), now=0)
    body = json.loads(request.body)
    assert body["type"] == "job.completed" and body["id"] == request.headers["Farm-Event-Id"]
    assert body["data"]["job"]["id"] == job_id and body["data"]["job"]["status"] == "cancelled"
    assert body["data"]["job"]["cancelled"] == 2 and body["data"]["campaign"] is None
    assert body["data"]["links"]["images"] == f"https://farm.example.com/v1/jobs/{job_id}/images"
    assert request.headers["Content-Type"] == "application/json"
    [delivery] = deliveries(api, job_id)
    assert delivery["status"] == "succeeded" and delivery["delivered_at"]
    assert [(a["number"], a["status_code"], a["outcome"]) for a in delivery["attempt_log"]] == [
        (1, 200, "succeeded")
    ]


def test_a_receiver_that_fails_twice_gets_one_success_after_three_attempts(
    api: ApiClient,
    tenant: uuid.UUID,
    receiver: Receiver,
    deliverer: Deliverer,
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    receiver.scripts["/flaky"] = [500, 500, 200]
    job_id = finished_job(api, receiver.url("/flaky"))
    start = utcnow()
    for step in range(5):  # the backoff is at most 0.05 s: one second later it is due
        deliverer.deliver_due(start + timedelta(seconds=step))
    requests = receiver.on("/flaky")
    assert [r.headers["Farm-Delivery-Attempt"] for r in requests] == ["1", "2", "3"]
    assert len({r.headers["Farm-Event-Id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1  # the same bytes each time, signed afresh
    secret = secret_of(sessions, tenant, settings)
    assert all(
        verify(secret, r.headers["Farm-Signature"], r.body, now=time.time()) for r in requests
    )
    [delivery] = deliveries(api, job_id)
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    assert [(a["status_code"], a["outcome"]) for a in delivery["attempt_log"]] == [
        (500, "retry"),
        (500, "retry"),
        (200, "succeeded"),
    ]
    assert delivery["attempt_log"][0]["error"] == "HTTP 500: no"


def test_a_refusal_gives_up_at_once_and_429_is_retried(
    api: ApiClient, tenant: uuid.UUID, receiver: Receiver, deliverer: Deliverer
) -> None:
    receiver.scripts["/gone"] = [410]
    receiver.scripts["/busy"] = [429, 200]
    gone = finished_job(api, receiver.url("/gone"))
    busy = finished_job(api, receiver.url("/busy"))
    start = utcnow()
    for step in range(3):
        deliverer.deliver_due(start + timedelta(seconds=step))
    assert len(receiver.on("/gone")) == 1 and len(receiver.on("/busy")) == 2
    [refused] = deliveries(api, gone)
    assert refused["status"] == "failed" and refused["last_status_code"] == 410
    assert refused["next_attempt_at"] is None
    assert deliveries(api, busy)[0]["status"] == "succeeded"


def test_retries_stop_after_the_max_age(
    api: ApiClient, tenant: uuid.UUID, receiver: Receiver, deliverer: Deliverer
) -> None:
    receiver.scripts["/down"] = [503]
    job_id = finished_job(api, receiver.url("/down"))
    start = utcnow()
    deliverer.deliver_due(start)
    deliverer.deliver_due(start + timedelta(hours=23, minutes=59, seconds=59, milliseconds=990))
    deliverer.deliver_due(start + timedelta(days=2))
    [delivery] = deliveries(api, job_id)
    assert delivery["status"] == "failed" and delivery["attempts"] == 2
    assert "gave up after 2 attempts" in delivery["last_error"]


def test_a_name_that_resolves_inside_is_refused_at_delivery(
    api: ApiClient,
    tenant: uuid.UUID,
    receiver: Receiver,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    """DNS rebinding: the URL passed submission (a name), the address it resolves to does not."""
    host = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(host, None)}
    assert resolved and not any(is_public(ipaddress.ip_address(str(a))) for a in resolved)
    job_id = finished_job(api, receiver.url("/ok", host=host))
    strict = Deliverer(settings.model_copy(update={"webhook_allow_private": False}), sessions)
    try:
        strict.deliver_due(utcnow())
        strict.deliver_due(utcnow() + timedelta(hours=1))
    finally:
        strict.close()
    assert receiver.on("/ok") == []
    [delivery] = deliveries(api, job_id)
    assert delivery["status"] == "failed" and delivery["attempts"] == 1
    assert "not a public address" in delivery["last_error"]


def wait_for(what: str, predicate: Callable[[], object], timeout_s: float = 60) -> None:
    """Poll until ``predicate`` holds; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_dead_receivers_do_not_block_other_deliveries(
    api: ApiClient,
    tenant: uuid.UUID,
    receiver: Receiver,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    """Two slots: one held by a receiver that hangs, one freed at once by a refused connection."""
    with socket.socket() as closed:  # a port nobody listens on: connection refused
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    hanging = finished_job(api, receiver.url("/hang"))
    refused = finished_job(api, f"http://127.0.0.1:{dead_port}/hook")
    healthy = finished_job(api, receiver.url("/ok"))
    sender = Deliverer(
        settings.model_copy(
            update={
                "webhook_concurrency": 2,
                "webhook_timeout_s": 120.0,  # the hang ends when the test releases it
                "webhook_backoff_base_s": 60.0,
                "webhook_backoff_max_s": 60.0,
            }
        ),
        sessions,
    )
    stop = threading.Event()
    loop = threading.Thread(target=sender.run, args=(stop,), kwargs={"poll_s": 0.05})
    loop.start()
    try:
        wait_for("the healthy receiver", lambda: receiver.on("/ok"))
        # Served while the hanging receiver still holds its request (released only now).
        assert receiver.on("/hang") and not receiver.release.is_set()
        assert deliveries(api, hanging)[0]["attempt_log"] == []
        receiver.release.set()
        wait_for("the hanging attempt", lambda: deliveries(api, hanging)[0]["attempt_log"])
    finally:
        receiver.release.set()
        stop.set()
        loop.join(10)
        sender.close()
    assert deliveries(api, hanging)[0]["status"] == "succeeded"
    [dead] = deliveries(api, refused)
    assert dead["status"] == "pending" and dead["attempt_log"][0]["outcome"] == "retry"
    assert "ConnectError" in dead["attempt_log"][0]["error"]
    assert deliveries(api, healthy)[0]["status"] == "succeeded"


def test_a_hanging_receiver_times_out_and_is_retried(
    api: ApiClient,
    tenant: uuid.UUID,
    receiver: Receiver,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
    hanging = finished_job(api, receiver.url("/hang"))
    timeout_s = 0.3
    sender = Deliverer(
        settings.model_copy(
            update={
                "webhook_timeout_s": timeout_s,
                "webhook_backoff_base_s": 60.0,  # one attempt: the retry is a minute away
                "webhook_backoff_max_s": 60.0,
            }
        ),
        sessions,
    )
    try:
        sender.deliver_due()
    finally:
        sender.close()
    assert not receiver.release.is_set()  # the receiver never answered: the timeout ended it
    [hung] = deliveries(api, hanging)
    [attempt] = hung["attempt_log"]
    assert attempt["outcome"] == "retry" and "timeout" in attempt["error"]
    assert attempt["duration_ms"] >= timeout_s * 1000  # waited its timeout out, never less
    assert hung["status"] == "pending" and hung["next_attempt_at"]
