"""The /v1/campaigns contract, in-process against real Postgres (ticks: test_campaign_scheduler)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from models.db.campaign_tables import Campaign
from models.db.keys import create_api_key, tenant_for_key
from models.db.webhook_tables import WebhookDelivery
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from tests.conftest import ApiClient

MODEL = "campaign-test"  # no worker serves it: nothing here is ever rendered
SPEC: dict[str, Any] = {"prompts": ["1girl", "1boy"], "seeds": [1, 2], "model": MODEL}
BODY: dict[str, Any] = {"name": "nightly", "schedule": "0 3 * * *", "timezone": "Asia/Tokyo"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"models": {**settings.models, MODEL: "simulated:0"}})


@pytest.fixture
def client(api: ApiClient, sessions: sessionmaker[Session]) -> Iterator[ApiClient]:
    yield api
    with sessions.begin() as session:  # no later beat in this database sees them
        tenant = tenant_for_key(session, key=api.key)
        session.execute(delete(Campaign).where(Campaign.tenant_id == tenant))
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant))


def _create(api: ApiClient, **fields: Any) -> dict[str, Any]:
    body = {**BODY, "name": f"api-test {uuid.uuid4().hex[:6]}", "spec": SPEC, **fields}
    response = api.client.post("/v1/campaigns", json=body, headers=api.auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _fields(response: Any) -> list[str]:
    return [d["field"] for d in response.json()["detail"]]


def test_create_and_get_show_the_next_fire_time(client: ApiClient) -> None:
    response = client.client.post(
        "/v1/campaigns",
        json={**BODY, "name": "api-test a", "spec": SPEC, "schedule": "@daily"},
        headers=client.auth,
    )
    assert response.status_code == 201, response.text
    campaign = response.json()
    assert response.headers["location"] == f"/v1/campaigns/{campaign['id']}"
    assert campaign["state"] == "active" and campaign["enabled"] is True
    assert campaign["overlap"] == "skip" and campaign["seed_policy"] == "fixed"
    next_fire = datetime.fromisoformat(campaign["next_fire_at"])
    assert next_fire > datetime.now(UTC)
    assert next_fire.astimezone(UTC).hour == 15  # midnight in Tokyo
    got = client.client.get(f"/v1/campaigns/{campaign['id']}", headers=client.auth).json()
    assert got == campaign


def test_list_pages_newest_first(client: ApiClient) -> None:
    ids = [_create(client)["id"] for _ in range(3)]
    first = client.client.get("/v1/campaigns?limit=2", headers=client.auth).json()
    assert [c["id"] for c in first["items"]] == ids[::-1][:2]
    rest = client.client.get(
        f"/v1/campaigns?limit=2&cursor={first['next_cursor']}", headers=client.auth
    ).json()
    assert [c["id"] for c in rest["items"]] == ids[:1] and rest["next_cursor"] is None
    for limit in (0, 1001):
        bad = client.client.get(f"/v1/campaigns?limit={limit}", headers=client.auth)
        assert bad.status_code == 422 and _fields(bad) == ["limit"]
    bad = client.client.get("/v1/campaigns?cursor=zzz", headers=client.auth)
    assert bad.status_code == 400 and _fields(bad) == ["cursor"]


def test_pause_resume_and_edit(client: ApiClient) -> None:
    campaign = _create(client)
    url = f"/v1/campaigns/{campaign['id']}"
    paused = client.client.patch(url, json={"enabled": False}, headers=client.auth).json()
    assert (paused["state"], paused["next_fire_at"]) == ("paused", None)
    resumed = client.client.patch(url, json={"enabled": True}, headers=client.auth).json()
    assert resumed["state"] == "active" and resumed["next_fire_at"] is not None
    edited = client.client.patch(
        url,
        json={"schedule": "*/5 * * * *", "spec": {**SPEC, "buckets": ["13:19"]}, "jitter": 30},
        headers=client.auth,
    ).json()
    assert edited["schedule"] == "*/5 * * * *" and edited["jitter_s"] == 30
    assert edited["spec"]["buckets"] == ["832x1216"] and edited["name"] == campaign["name"]
    bad = client.client.patch(url, json={"spec": {**SPEC, "buckets": ["1x1"]}}, headers=client.auth)
    assert bad.status_code == 422 and _fields(bad) == ["spec.buckets"]
    bad = client.client.patch(url, json={"timezone": "Mars/Olympus"}, headers=client.auth)
    assert bad.status_code == 422 and _fields(bad) == ["timezone"]
    bad = client.client.patch(url, json={"max_images_per_run": 3}, headers=client.auth)
    assert bad.status_code == 422 and _fields(bad) == ["max_images_per_run"]
    bad = client.client.patch(url, json={"name": None}, headers=client.auth)
    assert bad.status_code == 422 and _fields(bad) == ["name"]


def test_delete(client: ApiClient) -> None:
    campaign = _create(client)
    url = f"/v1/campaigns/{campaign['id']}"
    assert client.client.delete(url, headers=client.auth).status_code == 204
    assert client.client.get(url, headers=client.auth).status_code == 404


def test_another_tenants_campaign_is_404(
    client: ApiClient, sessions: sessionmaker[Session]
) -> None:
    campaign = _create(client)
    with sessions.begin() as session:
        other = create_api_key(session, tenant_name=f"other-{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {other}"}
    base = f"/v1/campaigns/{campaign['id']}"
    assert client.client.get(base, headers=headers).status_code == 404
    assert client.client.patch(base, json={"enabled": False}, headers=headers).status_code == 404
    assert client.client.post(f"{base}/trigger", headers=headers).status_code == 404
    assert client.client.get(f"{base}/runs", headers=headers).status_code == 404
    assert client.client.delete(base, headers=headers).status_code == 404
    listed = client.client.get("/v1/campaigns", headers=headers).json()
    assert campaign["id"] not in [c["id"] for c in listed["items"]]
    assert client.client.get("/v1/campaigns/not-a-uuid", headers=client.auth).status_code == 404


def test_trigger_makes_a_run_with_a_job_now(client: ApiClient) -> None:
    campaign = _create(client, enabled=False, webhook_url="https://hooks.example.com/farm")
    before = datetime.now(UTC)
    response = client.client.post(f"/v1/campaigns/{campaign['id']}/trigger", headers=client.auth)
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["origin"] == "manual" and run["status"] == "queued"
    assert datetime.fromisoformat(run["scheduled_for"]) >= before
    assert run["outcome"]["total"] == 4 and run["job_id"]
    published = [client.publisher.queue.get_nowait() for _ in range(client.publisher.queue.qsize())]
    assert published and all(model == MODEL for model, _ in published)
    job = client.client.get(f"/v1/jobs/{run['job_id']}", headers=client.auth).json()
    assert job["labels"]["campaign_id"] == campaign["id"]
    runs = client.client.get(f"/v1/campaigns/{campaign['id']}/runs", headers=client.auth).json()
    assert [r["id"] for r in runs["items"]] == [run["id"]]
    # overlap skip (the default): the first run is still queued
    again = client.client.post(f"/v1/campaigns/{campaign['id']}/trigger", headers=client.auth)
    assert again.json()["status"] == "skip_overlap" and again.json()["job_id"] is None
    forced = client.client.post(
        f"/v1/campaigns/{campaign['id']}/trigger",
        json={"overlap": "allow_all"},
        headers=client.auth,
    )
    assert forced.json()["status"] == "queued"
    page = client.client.get(
        f"/v1/campaigns/{campaign['id']}/runs?limit=2", headers=client.auth
    ).json()
    assert len(page["items"]) == 2 and page["next_cursor"]


def test_backfill_dry_run_and_real(client: ApiClient) -> None:
    campaign = _create(client, seed_policy="date")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=3)
    url = f"/v1/campaigns/{campaign['id']}/backfill"
    dry = client.client.post(
        url,
        json={"start": start.isoformat(), "end": end.isoformat(), "dry_run": True},
        headers=client.auth,
    ).json()
    assert len(dry["items"]) == 3 and all(i["run"] is None for i in dry["items"])
    real = client.client.post(
        url, json={"start": start.isoformat(), "end": end.isoformat()}, headers=client.auth
    ).json()
    assert [i["seeds"] for i in real["items"]] == [i["seeds"] for i in dry["items"]]
    assert all(i["run"]["origin"] == "backfill" and i["run"]["job_id"] for i in real["items"])
    future = client.client.post(
        url,
        json={"start": start.isoformat(), "end": (end + timedelta(days=2)).isoformat()},
        headers=client.auth,
    )
    assert future.status_code == 422 and _fields(future) == ["end"]
    huge = client.client.post(
        url, json={"start": "2000-01-01T00:00:00Z", "end": end.isoformat()}, headers=client.auth
    )
    assert huge.status_code == 422 and _fields(huge) == ["end"]
    naive = client.client.post(
        url, json={"start": "2026-01-01T00:00:00", "end": end.isoformat()}, headers=client.auth
    )
    assert naive.status_code == 422 and _fields(naive) == ["start"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"schedule": "0 0 31 2 *"}, "schedule"),
        ({"schedule": "@reboot"}, "schedule"),
        ({"timezone": "Asia/Neo-Tokyo"}, "timezone"),
        ({"spec": {**SPEC, "buckets": ["1000x1000"]}}, "spec.buckets"),
        ({"spec": {**SPEC, "prompts": []}}, "spec.prompts"),
        ({"spec": {**SPEC, "model": "nope"}}, "spec.model"),
        ({"spec": {**SPEC, "webhook_url": "http://10.0.0.8/"}}, "spec.webhook_url"),
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({"webhook_url": "http://127.0.0.1/"}, "webhook_url"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"seed_policy": "lucky"}, "seed_policy"),
        ({"catchup_window_s": 5}, "catchup_window_s"),
        ({"max_images_per_run": 3}, "max_images_per_run"),
        ({"end_at": "2026-01-01T00:00:00"}, "end_at"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_names_the_field(client: ApiClient, fields: dict[str, Any], field: str) -> None:
    body = {**BODY, "name": "api-test bad", "spec": SPEC, **fields}
    response = client.client.post("/v1/campaigns", json=body, headers=client.auth)
    assert response.status_code == 422, response.text
    assert _fields(response) == [field]


def test_a_job_webhook_url_is_checked_too(client: ApiClient) -> None:
    for url, status in [
        ("http://169.254.169.254/latest", 422),
        ("gopher://example.com/", 422),
        ("https://hooks.example.com/x", 201),
    ]:
        response = client.client.post(
            "/v1/jobs", json={**SPEC, "webhook_url": url}, headers=client.auth
        )
        assert response.status_code == status, response.text
        if status == 422:
            assert _fields(response) == ["webhook_url"]


def test_the_operator_may_allow_private_receivers(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    allowed = settings.model_copy(update={"webhook_allow_private": True})
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=f"private-{uuid.uuid4().hex[:8]}")
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(allowed, publisher=LocalPublisher())) as client:
        job = {**SPEC, "webhook_url": "http://127.0.0.1:9/hook"}
        assert client.post("/v1/jobs", json=job, headers=headers).status_code == 201
        still_bad = client.post(
            "/v1/jobs", json={**SPEC, "webhook_url": "file:///etc/passwd"}, headers=headers
        )
        assert still_bad.status_code == 422


def test_webhook_secret_is_made_once_and_rotates(client: ApiClient) -> None:
    first = client.client.get("/v1/webhooks/secret", headers=client.auth).json()
    assert first["secret"].startswith("whsec_") and "Farm-Signature" in first["header"]
    again = client.client.get("/v1/webhooks/secret", headers=client.auth).json()
    assert again["secret"] == first["secret"]
    rotated = client.client.post("/v1/webhooks/secret/rotate", headers=client.auth).json()
    assert rotated["secret"] != first["secret"]
    after = client.client.get("/v1/webhooks/secret", headers=client.auth).json()
    assert after["secret"] == rotated["secret"]
    assert client.client.get("/v1/webhooks/secret").status_code == 401


def test_a_finished_job_queues_its_webhook_in_the_same_transaction(
    client: ApiClient, sessions: sessionmaker[Session]
) -> None:
    plain = client.client.post("/v1/jobs", json=SPEC, headers=client.auth).json()
    hooked = client.client.post(
        "/v1/jobs", json={**SPEC, "webhook_url": "https://hooks.example.com/x"}, headers=client.auth
    ).json()
    for job in (plain, hooked):
        client.client.post(f"/v1/jobs/{job['id']}/cancel", headers=client.auth)
    none = client.client.get(f"/v1/jobs/{plain['id']}/webhooks", headers=client.auth).json()
    assert none == {"items": [], "next_cursor": None}
    page = client.client.get(f"/v1/jobs/{hooked['id']}/webhooks", headers=client.auth).json()
    [delivery] = page["items"]
    assert delivery["event"] == "job.completed" and delivery["status"] == "pending"
    assert delivery["url"] == "https://hooks.example.com/x" and delivery["attempt_log"] == []
    listed = client.client.get(
        f"/v1/webhooks/deliveries?job_id={hooked['id']}", headers=client.auth
    ).json()
    assert [d["id"] for d in listed["items"]] == [delivery["id"]]
    with sessions.begin() as session:
        other = create_api_key(session, tenant_name=f"other-{uuid.uuid4().hex[:8]}")
    foreign = client.client.get(
        f"/v1/jobs/{hooked['id']}/webhooks", headers={"Authorization": f"Bearer {other}"}
    )
    assert foreign.status_code == 404
    theirs = client.client.get(
        "/v1/webhooks/deliveries", headers={"Authorization": f"Bearer {other}"}
    ).json()
    assert theirs["items"] == []
