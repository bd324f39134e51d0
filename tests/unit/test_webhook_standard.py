"""Webhooks in the Standard Webhooks format, verified by the ``standardwebhooks`` package;
secrets encrypted at rest; rotation with a grace period in which both secrets sign;
``job.progress`` at most as often as asked."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from beat.webhook_sender import Deliverer
from models.db.keys import create_api_key, tenant_for_key
from models.db.webhook_tables import WebhookDelivery, WebhookSecret
from models.domain.webhook_events import WebhookProgress, progress_due
from models.domain.webhook_signing import verify
from models.infra.encryption import InvalidToken, SecretBox, new_key
from models.infra.settings import Settings
from models.infra.storage import make_storage
from models.service.retention import RetentionSweep
from tests.business import render_all, tenant_app
from tests.webhook_receiver import Received, Receiver, serve_receiver

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as state:
        yield state


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": True, "webhook_timeout_s": 2.0})


def _deliver(settings: Settings, sessions: sessionmaker[Session], tenant: uuid.UUID) -> None:
    sender = Deliverer(settings, sessions)
    try:
        sender.deliver_due()
    finally:
        sender.close()
        with sessions.begin() as session:  # no later sender in this database sees them
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant))


def _verified_by(secret: str, request: Received) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return False
    return True


def test_a_receiver_verifies_with_the_standardwebhooks_package(
    settings: Settings, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    with tenant_app(settings, sessions) as tenant:
        job = tenant.submit(webhook_url=receiver.url("/hook"))
        tenant.client.post(f"/v1/jobs/{job['id']}/cancel", headers=tenant.auth)
        secret = tenant.client.get("/v1/webhooks/secret", headers=tenant.auth).json()
        _deliver(tenant.settings, sessions, tenant.id)
    [request] = receiver.on("/hook")
    body = json.loads(request.body)
    assert request.headers["webhook-id"] == body["id"] == request.headers["Farm-Event-Id"]
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 120
    assert _verified_by(secret["secret"], request)
    tampered = Received(request.path, request.headers, request.body.replace(b"cancelled", b"done"))
    assert not _verified_by(secret["secret"], tampered)
    # The farm's own header still comes along, for receivers of earlier versions.
    assert verify(
        secret["secret"], request.headers["Farm-Signature"], request.body, now=time.time()
    )
    assert "webhook-signature" in " ".join(secret["headers"])


def test_rotation_keeps_the_old_secret_signing_for_its_grace_period(
    settings: Settings, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    with tenant_app(settings, sessions) as tenant:
        client, auth = tenant.client, tenant.auth
        old = client.get("/v1/webhooks/secret", headers=auth).json()["secret"]
        rotated = client.post("/v1/webhooks/secret/rotate", json={"grace_s": 3600}, headers=auth)
        assert rotated.status_code == 200 and rotated.json()["previous_valid_until"]
        new = rotated.json()["secret"]
        assert new != old and new.startswith("whsec_")
        job = tenant.submit(webhook_url=receiver.url("/grace"))
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
        _deliver(tenant.settings, sessions, tenant.id)
        [during] = receiver.on("/grace")
        assert _verified_by(new, during) and _verified_by(old, during)
        assert len(during.headers["webhook-signature"].split()) == 2
        assert verify(old, during.headers["Farm-Signature"], during.body, now=time.time())

        # Without a grace period (or after it) only the new secret signs.
        latest = client.post("/v1/webhooks/secret/rotate", json={"grace_s": 0}, headers=auth)
        assert latest.json()["previous_valid_until"] is None
        job = tenant.submit(webhook_url=receiver.url("/after"))
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
        _deliver(tenant.settings, sessions, tenant.id)
        [after] = receiver.on("/after")
        assert _verified_by(latest.json()["secret"], after) and not _verified_by(new, after)
        bad = client.post("/v1/webhooks/secret/rotate", json={"grace_s": -1}, headers=auth)
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "grace_s"


def test_secrets_are_encrypted_at_rest_and_old_plaintext_ones_are_encrypted(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    legacy = "whsec_an-old-url-safe-secret"
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=f"legacy-{uuid.uuid4().hex[:8]}")
        tenant = tenant_for_key(session, key=key)
        assert tenant is not None
        session.add(WebhookSecret(tenant_id=tenant, secret=legacy))  # as an older version
    RetentionSweep(settings, sessions, make_storage(settings)).sweep()
    with sessions() as session:
        row = session.get(WebhookSecret, tenant)
        assert row is not None and row.secret is None and row.ciphertext
        assert legacy not in row.ciphertext
    assert SecretBox.from_settings(settings).decrypt(row.ciphertext) == legacy
    other_keys = settings.model_copy(update={"encryption_keys": new_key()})
    with pytest.raises(InvalidToken):  # another key cannot read it
        SecretBox.from_settings(other_keys).decrypt(row.ciphertext)
    rotated = settings.model_copy(
        update={"encryption_keys": f"{new_key()},{other_keys.encryption_keys}"}
    )
    box = SecretBox.from_settings(rotated)  # a new first key; the old one still decrypts
    assert box.decrypt(box.rotate(SecretBox.from_settings(other_keys).encrypt("s"))) == "s"


def test_progress_events_are_throttled() -> None:
    every_quarter = WebhookProgress(every_percent=25)
    due = [
        progress_due(
            every_quarter,
            fraction=f,
            last_fraction=last,
            last_at=T0,
            started_at=T0,
            now=T0 + timedelta(seconds=10),
            min_interval_s=5,
        )
        for f, last in [(0.2, 0.0), (0.25, 0.0), (0.6, 0.3), (1.0, 0.5)]
    ]
    assert due == [False, True, True, False]  # never for the last cell: job.completed
    every_minute = WebhookProgress(every_s=60)
    assert not progress_due(
        every_minute,
        fraction=0.5,
        last_fraction=0.1,
        last_at=T0,
        started_at=T0,
        now=T0 + timedelta(seconds=59),
        min_interval_s=5,
    )
    assert progress_due(
        every_minute,
        fraction=0.5,
        last_fraction=0.1,
        last_at=T0,
        started_at=T0,
        now=T0 + timedelta(seconds=60),
        min_interval_s=5,
    )
    # The operator's floor holds even for a client that asks for every percent.
    assert not progress_due(
        WebhookProgress(every_percent=1),
        fraction=0.5,
        last_fraction=0.1,
        last_at=T0,
        started_at=T0,
        now=T0 + timedelta(seconds=1),
        min_interval_s=5,
    )
    with pytest.raises(ValueError, match="every_s"):
        WebhookProgress()


def test_a_job_reports_its_progress(settings: Settings, sessions: sessionmaker[Session]) -> None:
    with tenant_app(
        settings, sessions, batch_size=1, webhook_progress_min_interval_s=0.0
    ) as tenant:
        job = tenant.submit(
            seeds=[1, 2, 3, 4],
            webhook_url="https://hooks.example.com/farm",
            webhook_progress={"every_percent": 50},
        )
        render_all(tenant.settings, tenant.model, one_by_one=True)
        with sessions() as session:
            events = session.execute(
                select(WebhookDelivery.event, WebhookDelivery.payload)
                .where(WebhookDelivery.job_id == uuid.UUID(job["id"]))
                .order_by(WebhookDelivery.id)
            ).all()
    assert [e for e, _ in events] == ["job.progress", "job.completed"]
    assert events[0][1]["progress"] == 0.5 and events[0][1]["job"]["done"] == 2
    refused = tenant.client.post(
        "/v1/jobs",
        json={"prompts": ["1girl"], "model": tenant.model, "webhook_progress": {}},
        headers=tenant.auth,
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "webhook_progress"


def test_a_secret_no_key_can_read_holds_up_only_its_own_deliveries(
    settings: Settings, sessions: sessionmaker[Session], receiver: Receiver
) -> None:
    """A tenant whose secret was encrypted with a key this process lacks: its delivery is
    never sent unsigned (it is retried, and says why); the others go out."""
    foreign = SecretBox.from_settings(settings.model_copy(update={"encryption_keys": new_key()}))
    with tenant_app(settings, sessions) as stranger, tenant_app(settings, sessions) as tenant:
        with sessions.begin() as session:
            session.add(WebhookSecret(tenant_id=stranger.id, ciphertext=foreign.encrypt("whsec_x")))
        theirs = stranger.submit(webhook_url=receiver.url("/theirs"))
        ours = tenant.submit(webhook_url=receiver.url("/ours"))
        for job, owner in ((theirs, stranger), (ours, tenant)):
            owner.client.post(f"/v1/jobs/{job['id']}/cancel", headers=owner.auth)
        sender = Deliverer(tenant.settings, sessions)
        try:
            sender.deliver_due()
        finally:
            sender.close()
        log = stranger.client.get(f"/v1/jobs/{theirs['id']}/webhooks", headers=stranger.auth)
        [delivery] = log.json()["items"]
        with sessions.begin() as session:
            for owner in (stranger, tenant):
                session.execute(
                    delete(WebhookDelivery).where(WebhookDelivery.tenant_id == owner.id)
                )
    assert len(receiver.on("/ours")) == 1 and receiver.on("/theirs") == []
    assert delivery["status"] == "pending" and "not signed" in delivery["last_error"]
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["retry"]
