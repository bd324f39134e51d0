"""A tenant's content policy at every door: allowed ratings (422 naming the prompt), the
forced rating tag and negative terms in every cell, and the limits after them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from beat.scheduler import tick
from models.db.campaign_tables import Campaign, CampaignRun
from models.db.keys import create_api_key, tenant_for_key
from models.db.policies import save_policy
from models.db.tables import Item
from models.domain.animagine import DEFAULT_NEGATIVE_PROMPT
from models.domain.policy import ContentPolicy, PolicyIn, check_ratings, with_forced_terms
from models.domain.spec import JobSpec, SpecError
from models.domain.tags import PromptTags
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings

MODEL = "policy-test"  # no worker serves it: nothing here renders
SAFE_ONLY = ContentPolicy(
    allowed_ratings=frozenset({"safe"}),
    forced_rating="safe",
    forced_negative="nsfw, nude, (suggestive:1.2)",
)


@dataclass
class Tenant:
    client: TestClient
    auth: dict[str, str]
    id: uuid.UUID
    settings: Settings


@pytest.fixture
def tenant(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[Tenant]:
    updated = settings.model_copy(update={"models": {**settings.models, MODEL: "simulated:0"}})
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=f"policy-{uuid.uuid4().hex[:8]}")
        tenant_id = tenant_for_key(session, key=key)
        assert tenant_id is not None
        save_policy(session, tenant_id=tenant_id, policy=SAFE_ONLY)
    with TestClient(create_app(updated, publisher=LocalPublisher())) as client:
        yield Tenant(client, {"Authorization": f"Bearer {key}"}, tenant_id, updated)
    with sessions.begin() as session:  # no later beat in this database sees them
        session.execute(delete(Campaign).where(Campaign.tenant_id == tenant_id))


def spec(*prompts: Any, **fields: Any) -> dict[str, Any]:
    return {"prompts": list(prompts), "seeds": [1], "model": MODEL, **fields}


def test_forced_terms_are_added_once() -> None:
    job = JobSpec.model_validate(spec("1girl, solo", "1girl, safe", {"subject": "1boy"}))
    rendered = with_forced_terms(job, SAFE_ONLY)
    assert rendered.prompts[0] == "1girl, solo, safe"
    assert rendered.prompts[1] == "1girl, safe"  # it already carries the tag
    assert isinstance(rendered.prompts[2], PromptTags) and rendered.prompts[2].rating == "safe"
    assert rendered.negative_prompt == f"{DEFAULT_NEGATIVE_PROMPT}, nsfw, nude, (suggestive:1.2)"
    assert job.prompts[0] == "1girl, solo"  # the client's spec is unchanged
    empty = JobSpec.model_validate(spec("1girl", negative_prompt=""))
    assert with_forced_terms(empty, SAFE_ONLY).negative_prompt == "nsfw, nude, (suggestive:1.2)"


def test_ratings_are_checked_on_every_encoded_text() -> None:
    def refused(job: dict[str, Any]) -> list[str]:
        try:
            check_ratings(with_forced_terms(JobSpec.model_validate(job), SAFE_ONLY), SAFE_ONLY)
        except SpecError as exc:
            return [e.field for e in exc.errors]
        return []

    assert refused(spec("1girl, solo")) == []
    assert refused(spec("1girl", "1girl, nsfw")) == ["prompts.1"]
    assert refused(spec("1girl, (explicit:1.1)")) == ["prompts.0"]
    assert refused(spec({"subject": "1girl", "rating": "sensitive"})) == ["prompts.0.rating"]
    # A Prompt S/R value that makes a rating tag is found in the variant it makes.
    assert refused(spec("1girl, ns", prompt_replace=["ns", "nsfw"])) == ["prompts.0"]
    assert refused(spec("1girl, nsfw", prompt_replace=["nsfw", "solo"])) == ["prompts.0"]


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"allowed_ratings": ["safe"], "forced_rating": "nsfw"}, "forced_rating"),
        ({"allowed_ratings": ["safe", "safe"]}, "allowed_ratings"),
        ({"allowed_ratings": ["mild"]}, "allowed_ratings.0"),
        ({"forced_negative": "(blurry:1.2.3)"}, "forced_negative"),
        ({"retention_s": 100, "max_retention_s": 10}, "retention_s"),
        ({"screening_threshold": 1.5}, "screening_threshold"),
        ({"monthly_gpu_seconds": 0}, "monthly_gpu_seconds"),
    ],
)
def test_a_bad_policy_names_its_field(given: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field.split(".")[0]):
        PolicyIn.model_validate(given)


def test_every_door_refuses_a_rating_the_tenant_may_not_ask_for(tenant: Tenant) -> None:
    client, auth = tenant.client, tenant.auth
    json_door = client.post("/v1/jobs", json=spec("1girl, nsfw"), headers=auth)
    dry_run = client.post("/v1/jobs?dry_run=true", json=spec("1girl, nsfw"), headers=auth)
    bulk = client.post(
        "/v1/jobs/bulk", json={"jobs": [spec("1girl"), spec("1boy, nsfw")]}, headers=auth
    )
    form = client.post(
        "/web/jobs/new",
        data={"prompts": "1girl, nsfw", "seeds": "1", "model": MODEL},
        headers=auth,
        follow_redirects=False,
    )
    body = {"name": "nightly", "schedule": "@daily", "spec": spec("1girl, explicit")}
    campaign = client.post("/v1/campaigns", json=body, headers=auth)
    for name, response, field in [
        ("json", json_door, "prompts.0"),
        ("dry run", dry_run, "prompts.0"),
        ("bulk", bulk, "jobs.1.prompts.0"),
        ("campaign", campaign, "spec.prompts.0"),
    ]:
        assert response.status_code == 422, (name, response.text)
        detail = response.json()["detail"]
        assert [d["field"] for d in detail] == [field], name
        assert "not allowed for this tenant (allowed: safe)" in detail[0]["reason"]
    assert form.status_code == 422 and "not allowed for this tenant" in form.text
    assert client.get("/v1/jobs", headers=auth).json()["items"] == []


def test_the_cells_carry_the_forced_tag_and_negatives(
    tenant: Tenant, sessions: sessionmaker[Session]
) -> None:
    sent = spec("1girl, solo", {"subject": "1boy", "rating": "safe"}, negative_prompt="lowres")
    created = tenant.client.post("/v1/jobs", json=sent, headers=tenant.auth)
    assert created.status_code == 201, created.text
    with sessions() as session:
        cells = session.scalars(
            select(Item).where(Item.job_id == uuid.UUID(created.json()["id"])).order_by(Item.index)
        ).all()
    assert [c.prompt.rsplit(", ", 1)[-1] for c in cells] == ["safe", "safe"]
    assert {c.negative_prompt for c in cells} == {"lowres, nsfw, nude, (suggestive:1.2)"}
    # The job keeps the request as the client sent it: a replay with the same key matches.
    replay = tenant.client.post(
        "/v1/jobs", json=sent, headers={**tenant.auth, "Idempotency-Key": "k"}
    )
    again = tenant.client.post(
        "/v1/jobs", json=sent, headers={**tenant.auth, "Idempotency-Key": "k"}
    )
    assert again.status_code == 200 and again.json()["id"] == replay.json()["id"]


def test_limits_hold_after_the_forced_terms(tenant: Tenant) -> None:
    """A negative prompt that fits alone no longer fits with the forced terms: 422."""
    limit = tenant.settings.max_prompt_chars
    forced = ", nsfw, nude, (suggestive:1.2)"
    fits_alone = "x" * (limit - len(forced) + 1)
    response = tenant.client.post(
        "/v1/jobs", json=spec("1girl", negative_prompt=fits_alone), headers=tenant.auth
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "negative_prompt"
    assert f"the limit is {limit}" in response.json()["detail"][0]["reason"]


def test_a_scheduled_run_under_a_stricter_policy_is_refused(
    tenant: Tenant, sessions: sessionmaker[Session]
) -> None:
    """The campaign was accepted, then the operator allowed less: its tick is refused."""
    body = {"name": "nightly", "schedule": "* * * * *", "spec": spec("1girl, sensitive")}
    with sessions.begin() as session:
        save_policy(session, tenant_id=tenant.id, policy=ContentPolicy())
    created = tenant.client.post("/v1/campaigns", json=body, headers=tenant.auth)
    assert created.status_code == 201, created.text
    with sessions.begin() as session:
        save_policy(session, tenant_id=tenant.id, policy=SAFE_ONLY)
    campaign = uuid.UUID(created.json()["id"])
    due = datetime.now(UTC) + timedelta(minutes=2)
    tick(sessions, settings=tenant.settings, publisher=LocalPublisher(), now=due)
    with sessions() as session:
        runs = session.scalars(select(CampaignRun).where(CampaignRun.campaign_id == campaign)).all()
    refused = [r for r in runs if r.status == "refused"]
    assert refused and all(r.job_id is None for r in runs)  # the others: skips
    assert "rating 'sensitive' is not allowed" in (refused[0].reason or "")
