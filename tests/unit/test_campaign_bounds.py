"""The campaign door: every field is bounded to what its column holds, and far dates are a 422.

Each case goes through the real HTTP API and must come back 422 naming the field,
with nothing stored. Bodies are sent as ASCII JSON so that NUL and lone surrogates
arrive as the escapes a client would send (``"\\u0000"``, ``"\\ud800"``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.campaign_tables import Campaign, CampaignRun
from models.db.keys import tenant_for_key
from models.infra.settings import Settings
from tests.conftest import ApiClient

MODEL = "campaign-test"  # no worker serves it: nothing here is ever rendered
SPEC: dict[str, Any] = {"prompts": ["1girl"], "seeds": [1, 2], "model": MODEL}
BODY: dict[str, Any] = {"name": "bounds", "schedule": "0 3 * * *", "spec": SPEC}
INT32_MAX = 2**31 - 1
FAR_PAST = "0001-01-01T00:00:00+14:00"  # converting it to UTC overflows
FAR_FUTURE = "9999-12-31T23:59:59-14:00"  # so does this one

BAD_FIELDS: list[tuple[str, Any, str]] = [
    # (field, value, words in the reason)
    ("name", "", "at least 1 character"),
    ("name", "n" * 201, "at most 200 characters"),
    ("name", "night\u0000ly", "NUL"),
    ("name", "\ud800", "unicode"),
    ("schedule", "0 3 * * *\u0000", "NUL"),
    ("schedule", "\udfff 3 * * *", "unicode"),
    ("schedule", ",".join(["0"] * 100) + " 3 * * *", "at most 200 characters"),  # valid cron
    ("timezone", "Europe/" + "x" * 60, "at most 64 characters"),
    ("timezone", "UTC\u0000", "NUL"),
    ("timezone", "\ud83d", "unicode"),
    ("max_images_per_run", 0, "greater than or equal to 1"),
    ("max_images_per_run", 1_000_001, "less than or equal to 1000000"),
    ("max_images_per_run", INT32_MAX + 1, "less than or equal to 1000000"),
    ("max_images_per_run", 10**30, "less than or equal to 1000000"),
    ("catchup_window_s", 10 * 365 * 24 * 3600 + 1, "less than or equal to 315360000"),
    ("catchup_window_s", INT32_MAX + 1, "less than or equal to 315360000"),
    ("catchup_window_s", 10**30, "less than or equal to 315360000"),
    ("jitter_s", 24 * 3600 + 1, "less than or equal to 86400"),
    ("jitter_s", INT32_MAX + 1, "less than or equal to 86400"),
    ("end_at", FAR_PAST, "years 2000-2999"),
    ("end_at", FAR_FUTURE, "years 2000-2999"),
    ("end_at", "1999-12-31T23:59:59Z", "years 2000-2999"),
    ("end_at", "3000-01-01T00:00:00Z", "years 2000-2999"),
    ("webhook_url", "https://hooks.example.com/\ud800", "unicode"),
    ("webhook_url", "https://hooks.example.com/\u0000", "NUL"),
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"models": {**settings.models, MODEL: "simulated:0"}})


@pytest.fixture
def tenant(api: ApiClient, sessions: sessionmaker[Session]) -> Iterator[uuid.UUID]:
    with sessions() as session:
        tenant_id = tenant_for_key(session, key=api.key)
    assert tenant_id is not None
    yield tenant_id
    with sessions.begin() as session:  # no later beat in this database sees them
        session.execute(delete(Campaign).where(Campaign.tenant_id == tenant_id))


def send(api: ApiClient, method: str, url: str, body: dict[str, Any]) -> Any:
    """The TestClient's response (httpx or httpx2, whichever starlette picked)."""
    headers = {**api.auth, "Content-Type": "application/json"}
    return api.client.request(method, url, content=json.dumps(body), headers=headers)


def fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [d["field"] for d in response.json()["detail"]]


def reason(response: Any) -> str:
    [detail] = response.json()["detail"]
    return str(detail["reason"]).lower()


def stored(sessions: sessionmaker[Session], tenant_id: uuid.UUID) -> tuple[int, int]:
    """(campaigns, runs) of the tenant."""
    with sessions() as session:
        campaigns = session.scalar(
            select(func.count()).select_from(Campaign).where(Campaign.tenant_id == tenant_id)
        )
        runs = session.scalar(
            select(func.count()).select_from(CampaignRun).where(CampaignRun.tenant_id == tenant_id)
        )
    return int(campaigns or 0), int(runs or 0)


def create(api: ApiClient, **fields: Any) -> dict[str, Any]:
    response = send(api, "POST", "/v1/campaigns", {**BODY, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.mark.parametrize(("field", "value", "why"), BAD_FIELDS)
def test_create_refuses_what_the_columns_cannot_hold(
    api: ApiClient,
    tenant: uuid.UUID,
    sessions: sessionmaker[Session],
    field: str,
    value: Any,
    why: str,
) -> None:
    response = send(api, "POST", "/v1/campaigns", {**BODY, field: value})
    assert fields(response) == [field]
    assert why.lower() in reason(response)
    assert stored(sessions, tenant) == (0, 0)


@pytest.mark.parametrize(("field", "value", "why"), BAD_FIELDS)
def test_patch_refuses_it_too_and_changes_nothing(
    api: ApiClient, tenant: uuid.UUID, field: str, value: Any, why: str
) -> None:
    campaign = create(api)
    url = f"/v1/campaigns/{campaign['id']}"
    response = send(api, "PATCH", url, {field: value})
    assert fields(response) == [field]
    assert why.lower() in reason(response)
    assert api.client.get(url, headers=api.auth).json() == campaign


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"webhook_url": "https://hooks.example.com/\ud800"}, "spec.webhook_url"),
        ({"name": "night\u0000ly"}, "spec.name"),
        ({"labels": {"team": "\udc00"}}, "spec.labels.team"),
    ],
)
def test_the_inner_spec_is_held_to_the_same_text_rules(
    api: ApiClient,
    tenant: uuid.UUID,
    sessions: sessionmaker[Session],
    change: dict[str, Any],
    field: str,
) -> None:
    response = send(api, "POST", "/v1/campaigns", {**BODY, "spec": {**SPEC, **change}})
    assert fields(response) == [field]
    assert stored(sessions, tenant) == (0, 0)


def test_the_bounds_themselves_are_accepted(api: ApiClient, tenant: uuid.UUID) -> None:
    campaign = create(
        api,
        name="n" * 200,
        schedule=",".join(["0"] * 95) + ",59 3 * * *",  # 200 characters
        timezone="America/Argentina/ComodRivadavia",
        max_images_per_run=1_000_000,
        catchup_window_s=10 * 365 * 24 * 3600,
        jitter_s=24 * 3600,
        end_at="2999-12-31T23:59:59.999999Z",
    )
    assert len(campaign["schedule"]) == 200 and campaign["jitter_s"] == 24 * 3600
    assert datetime.fromisoformat(campaign["end_at"]).year == 2999
    early = create(api, end_at="2000-01-01T00:00:00Z")  # long over: it has ended
    assert early["state"] == "ended" and early["next_fire_at"] is None
    yearly = create(api, schedule="@yearly")
    dry = send(
        api,
        "POST",
        f"/v1/campaigns/{yearly['id']}/backfill",
        {"start": "2000-01-01T00:00:00Z", "end": "2003-06-01T00:00:00Z", "dry_run": True},
    )
    assert dry.status_code == 200, dry.text
    assert [i["scheduled_for"][:10] for i in dry.json()["items"]] == [
        "2000-01-01",
        "2001-01-01",
        "2002-01-01",
        "2003-01-01",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"overlap": "sometimes"}, "overlap"),
        ({"overlap": "skip\u0000"}, "overlap"),
        ({"overlap": "\ud800"}, "overlap"),
        ({"overlap": 7}, "overlap"),
        ({"overlap": "skip", "at": "now"}, "at"),
    ],
)
def test_trigger_refuses_a_bad_body_and_starts_nothing(
    api: ApiClient,
    tenant: uuid.UUID,
    sessions: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    campaign = create(api)
    assert fields(send(api, "POST", f"/v1/campaigns/{campaign['id']}/trigger", body)) == [field]
    assert stored(sessions, tenant) == (1, 0)


HOUR_AGO = (datetime.now(UTC) - timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start": FAR_PAST, "end": HOUR_AGO}, "start"),
        ({"start": "2000-01-01T00:30:00+01:00", "end": HOUR_AGO}, "start"),  # 1999 in UTC
        ({"start": HOUR_AGO, "end": FAR_FUTURE}, "end"),
        ({"start": HOUR_AGO, "end": "3000-01-01T00:00:00Z"}, "end"),
        ({"start": "2026-01-01T00:00:00\u0000", "end": HOUR_AGO}, "start"),
    ],
)
def test_backfill_refuses_far_dates_and_renders_nothing(
    api: ApiClient,
    tenant: uuid.UUID,
    sessions: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    campaign = create(api, schedule="* * * * *")
    url = f"/v1/campaigns/{campaign['id']}/backfill"
    assert fields(send(api, "POST", url, body)) == [field]
    assert fields(send(api, "POST", url, {**body, "dry_run": True})) == [field]
    assert stored(sessions, tenant) == (1, 0)
