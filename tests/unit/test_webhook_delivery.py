"""Webhook delivery to a real HTTP receiver on 127.0.0.1, from the outbox on real Postgres."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from beat.webhook_sender import Deliverer
from models.db.keys import tenant_for_key
from models.db.tables import WebhookDelivery, WebhookSecret, utcnow
from models.domain.webhook_signing import verify
from models.domain.webhook_urls import is_public
from models.infra.settings import Settings
from tests.conftest import ApiClient

MODEL = "campaign-test"  # no worker serves it: jobs here end by cancellation
SPEC: dict[str, Any] = {"prompts": ["1girl"], "seeds": [1, 2], "model": MODEL}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Each path answers from its script of status codes (the last one repeats)."""

    port: int = 0
    scripts: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append(Received(self.path, dict(self.headers.items()), body))
            if self.path == "/hang":
                state.release.wait(30)
            script = state.scripts.get(self.path, [200])
            code = script.pop(0) if len(script) > 1 else script[0]
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no" if code >= 300 else b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


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


def secret_of(sessions: sessionmaker[Session], tenant_id: uuid.UUID) -> str:
    with sessions() as session:
        return session.scalars(
            select(WebhookSecret.secret).where(WebhookSecret.tenant_id == tenant_id)
        ).one()


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
) -> None:
    job_id = finished_job(api, receiver.url("/ok"))
    deliverer.deliver_due()
    [request] = receiver.on("/ok")
    secret = api.client.get("/v1/webhooks/secret", headers=api.auth).json()["secret"]
    assert secret == secret_of(sessions, tenant)
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
    secret = secret_of(sessions, tenant)
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


def test_dead_receivers_do_not_block_other_deliveries(
    api: ApiClient,
    tenant: uuid.UUID,
    receiver: Receiver,
    settings: Settings,
    sessions: sessionmaker[Session],
) -> None:
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
                "webhook_timeout_s": 1.5,
                "webhook_backoff_base_s": 60.0,
                "webhook_backoff_max_s": 60.0,
            }
        ),
        sessions,
    )
    stop = threading.Event()
    loop = threading.Thread(target=sender.run, args=(stop,), kwargs={"poll_s": 0.05})
    started = time.monotonic()
    loop.start()
    try:
        while not receiver.on("/ok") and time.monotonic() - started < 10:
            time.sleep(0.01)
        healthy_after_s = time.monotonic() - started
        assert receiver.on("/hang"), "the hanging receiver was tried first"
        assert healthy_after_s < 1.0, f"the healthy receiver waited {healthy_after_s:.2f} s"
        while deliveries(api, hanging)[0]["attempt_log"] == [] and time.monotonic() - started < 10:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(10)
        sender.close()
    [hung] = deliveries(api, hanging)
    assert [a["outcome"] for a in hung["attempt_log"]] == ["retry"]
    assert "timeout" in hung["attempt_log"][0]["error"]
    assert 1400 <= hung["attempt_log"][0]["duration_ms"] < 5000
    [dead] = deliveries(api, refused)
    assert dead["status"] == "pending" and dead["attempt_log"][0]["outcome"] == "retry"
    assert "ConnectError" in dead["attempt_log"][0]["error"]
    assert deliveries(api, healthy)[0]["status"] == "succeeded"
