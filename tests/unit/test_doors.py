"""One rule, every door: quotas and the rate limit hold on every way in.

The doors that make jobs (JSON, bulk, the web form, campaign trigger and backfill)
answer 429 for an over-quota tenant; a scheduled tick records a refused run instead.
Every ``/web/*`` route answers 429 past the tenant's request rate, like ``/v1``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from api.routes import web, web_control, web_files
from beat.scheduler import tick
from models.db.campaign_tables import Campaign, CampaignRun
from models.db.keys import create_api_key, tenant_for_key
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings

MODEL = "doors-test"  # no worker serves it: nothing here renders
SPEC: dict[str, Any] = {"prompts": ["1girl"], "seeds": [1, 2, 3, 4], "model": MODEL}


@dataclass
class Door:
    client: TestClient
    auth: dict[str, str]
    publisher: LocalPublisher
    settings: Settings
    tenant: uuid.UUID


@pytest.fixture
def door(
    settings: Settings, sessions: sessionmaker[Session], request: pytest.FixtureRequest
) -> Iterator[Door]:
    """The real app with ``request.param``'s limits, and a fresh tenant's key."""
    limits: dict[str, Any] = getattr(request, "param", {})
    updated = settings.model_copy(
        update={"models": {**settings.models, MODEL: "simulated:0"}, **limits}
    )
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=f"doors-{uuid.uuid4().hex[:8]}")
        tenant = tenant_for_key(session, key=key)
    assert tenant is not None
    publisher = LocalPublisher()
    with TestClient(create_app(updated, publisher=publisher)) as client:
        yield Door(client, {"Authorization": f"Bearer {key}"}, publisher, updated, tenant)
    with sessions.begin() as session:  # no later beat in this database sees them
        session.execute(delete(Campaign).where(Campaign.tenant_id == tenant))


def _campaign(door: Door, **fields: Any) -> str:
    body = {"name": "doors", "schedule": "* * * * *", "spec": SPEC, **fields}
    response = door.client.post("/v1/campaigns", json=body, headers=door.auth)
    assert response.status_code == 201, response.text
    campaign_id: str = response.json()["id"]
    return campaign_id


QUOTA = {"max_active_cells": 6}  # one 4-cell job fits, a second does not


@pytest.mark.parametrize("door", [QUOTA], indirect=True)
def test_every_door_refuses_an_over_quota_tenant(door: Door) -> None:
    client, auth = door.client, door.auth
    first = client.post("/v1/jobs", json=SPEC, headers=auth)
    assert first.status_code == 201, first.text
    json_door = client.post("/v1/jobs", json=SPEC, headers=auth)
    bulk = client.post("/v1/jobs/bulk", json={"jobs": [SPEC]}, headers=auth)
    form = client.post(
        "/web/jobs/new",
        data={"prompts": "1girl", "seeds": "1 2 3 4", "model": MODEL},
        headers=auth,
        follow_redirects=False,
    )
    campaign = _campaign(door, enabled=False)
    trigger = client.post(f"/v1/campaigns/{campaign}/trigger", headers=auth)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    window = {"start": (end - timedelta(minutes=2)).isoformat(), "end": end.isoformat()}
    backfill = client.post(f"/v1/campaigns/{campaign}/backfill", json=window, headers=auth)
    for name, response in [
        ("json", json_door),
        ("bulk", bulk),
        ("form", form),
        ("trigger", trigger),
        ("backfill", backfill),
    ]:
        assert response.status_code == 429, (name, response.text[:300])
        assert response.headers["retry-after"] == "60", name
    for response in (json_door, bulk, trigger, backfill):
        assert "limit of 6" in response.json()["message"]
        assert response.json()["detail"][0]["field"] == "prompts"
    assert "limit of 6" in form.text  # the form shows it next to the fields
    runs = client.get(f"/v1/campaigns/{campaign}/runs", headers=auth).json()["items"]
    assert runs == []  # a refused trigger or backfill records nothing: the caller retries
    # Only the first job was made, and published.
    jobs = client.get("/v1/jobs", headers=auth).json()["items"]
    assert [j["id"] for j in jobs] == [first.json()["id"]]


@pytest.mark.parametrize("door", [QUOTA], indirect=True)
def test_a_scheduled_tick_over_quota_records_a_refused_run(
    door: Door, sessions: sessionmaker[Session]
) -> None:
    assert door.client.post("/v1/jobs", json=SPEC, headers=door.auth).status_code == 201
    campaign = uuid.UUID(_campaign(door))
    with sessions() as session:
        row = session.get(Campaign, campaign)
        assert row is not None and row.next_fire_at is not None
        due = row.next_fire_at
    results = tick(sessions, settings=door.settings, publisher=door.publisher, now=due)
    [result] = [r for r in results if r.run.campaign_id == campaign]
    assert result.job is None and result.publication is None
    with sessions() as session:
        run = session.scalars(select(CampaignRun).where(CampaignRun.campaign_id == campaign)).one()
    assert run.status == "refused"
    assert run.reason is not None and run.reason.startswith("quota: ")
    assert "limit of 6" in run.reason


def _web_routes(door: Door) -> list[tuple[str, str]]:
    """Every route under /web, with its path parameters filled in."""
    job = door.client.post("/v1/jobs", json=SPEC, headers=door.auth).json()["id"]
    found = []
    for route in web.router.routes + web_files.router.routes + web_control.router.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/web"):
            path = route.path.replace("{job_id}", job).replace("{path:path}", "manifest.json")
            found += [(method, path) for method in sorted(route.methods or ())]
    return found


@pytest.mark.parametrize("door", [{"rate_limit_per_s": 1}], indirect=True)
def test_every_web_route_is_rate_limited(door: Door) -> None:
    routes = _web_routes(door)
    assert len(routes) >= 8, routes  # pages, JSON, the form, the files
    for method, path in routes:
        # Two requests in one second pass the limit of 1; retry until two share one.
        statuses = []
        for _ in range(50):
            response = door.client.request(
                method, path, headers=door.auth, data={}, follow_redirects=False
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
        assert statuses[-1] == 429, (method, path, statuses)
        assert response.headers["retry-after"] == "1"
