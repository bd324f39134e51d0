"""Bad input is a 4xx naming the field on every door, never a 500.

Cursors on every list, the bulk door's Idempotency-Key, the web form's numbers, odd
file paths, prompts that only break once expanded; and the key cache's expiry and the
start-up checks of the configuration.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from api.key_cache import KeyCache
from models.infra.settings import Settings
from tests.conftest import ApiClient

SPEC: dict[str, Any] = {"prompts": ["1girl"], "seeds": [1], "model": "simulated"}


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


BAD_CURSORS = [
    "not base64 at all!",
    _cursor("a string"),
    _cursor([]),
    _cursor([99999999999999999999999999]),  # past any integer column
    _cursor([-1]),
    _cursor([1.5]),
    _cursor([True]),
    _cursor(["2026-01-01T00:00:00", str(uuid.uuid4())]),  # no time zone
    _cursor(["not a date", "not a uuid"]),
    _cursor([[1], {"a": 1}]),
    "A" * 5000,
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
]


def test_a_bad_cursor_is_a_400_naming_it_on_every_list(api: ApiClient) -> None:
    job = api.client.post("/v1/jobs", json=SPEC, headers=api.auth).json()["id"]
    body = {"name": "c", "schedule": "@daily", "spec": SPEC}
    campaign = api.client.post("/v1/campaigns", json=body, headers=api.auth).json()["id"]
    lists = [
        "/v1/jobs",
        f"/v1/jobs/{job}/images",
        f"/v1/jobs/{job}/webhooks",
        "/v1/campaigns",
        f"/v1/campaigns/{campaign}/runs",
        "/v1/webhooks/deliveries",
        f"/web/jobs/{job}/state",
    ]
    for path in lists:
        for cursor in BAD_CURSORS:
            response = api.client.get(path, params={"cursor": cursor}, headers=api.auth)
            assert response.status_code == 400, (path, cursor[:40], response.text[:200])
            assert response.json()["detail"][0]["field"] == "cursor"
    api.client.delete(f"/v1/campaigns/{campaign}", headers=api.auth)


def test_the_bulk_door_bounds_its_idempotency_key(api: ApiClient) -> None:
    long_key = "k" * 191  # with "#<index>" appended it would not fit the column
    response = api.client.post(
        "/v1/jobs/bulk",
        json={"jobs": [SPEC, SPEC]},
        headers={**api.auth, "Idempotency-Key": long_key},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "Idempotency-Key"
    ok = api.client.post(
        "/v1/jobs/bulk",
        json={"jobs": [SPEC, SPEC]},
        headers={**api.auth, "Idempotency-Key": "k" * 190},
    )
    assert ok.status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seeds", "1 ² 3"),  # str.isdigit() is True for "²"; int() refuses it
        ("seeds", "١٢"),  # Arabic-Indic digits
        ("seeds", "99999999999999999999999"),
        ("steps", "२८"),  # Devanagari digits
        ("steps", "1e400"),
        ("guidance_scale", "nan"),
        ("guidance_scale", "inf"),
    ],
)
def test_the_web_form_names_a_bad_number(api: ApiClient, field: str, value: str) -> None:
    form = {"prompts": "1girl", "seeds": "1", "model": "simulated", field: value}
    response = api.client.post("/web/jobs/new", data=form, headers=api.auth)
    assert response.status_code == 422, response.text[:300]
    assert f"<b>{field}" in response.text


@pytest.mark.parametrize(
    "path", ["a%00b.png", "sheets/%00", "a%0Ab", "..%2Fsecret", "%2E%2E/x", "thumbs//x.jpg"]
)
def test_odd_file_paths_are_404(api: ApiClient, path: str) -> None:
    job = api.client.post("/v1/jobs", json=SPEC, headers=api.auth).json()["id"]
    response = api.client.get(f"/web/jobs/{job}/files/{path}", headers=api.auth)
    assert response.status_code == 404, response.text


def test_a_prompt_that_breaks_only_after_expansion_is_refused_at_the_door(api: ApiClient) -> None:
    body = {**SPEC, "prompts": ["1girl, (smile:W)"], "prompt_replace": ["W", "1.2", "1.2.3"]}
    response = api.client.post("/v1/jobs", json=body, headers=api.auth)
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["field"] == "prompts.0" and "Prompt S/R value 2" in detail["reason"]
    long = {**SPEC, "prompts": ["x, " * 10], "prompt_replace": ["x", "y" * 500]}
    response = api.client.post("/v1/jobs", json=long, headers=api.auth)
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "prompts.0"


def test_the_dry_run_counts_chunks(api: ApiClient) -> None:
    body = {**SPEC, "prompts": ["1girl BREAK smile BREAK solo"], "quality_tags": False}
    response = api.client.post("/v1/jobs?dry_run=true", json=body, headers=api.auth)
    assert response.status_code == 200, response.text
    assert response.json()["max_prompt_chunks"] == 3


def test_the_key_cache_forgets_after_its_ttl() -> None:
    now = [100.0]
    cache = KeyCache(ttl_s=5, clock=lambda: now[0])
    tenant = uuid.uuid4()
    cache.put("farm_key", tenant)
    assert cache.get("farm_key") == tenant
    now[0] += 4.9
    assert cache.get("farm_key") == tenant  # a revoked key still works this long...
    now[0] += 0.2
    assert cache.get("farm_key") is None  # ...and no longer
    off = KeyCache(ttl_s=0, clock=lambda: now[0])
    off.put("farm_key", tenant)
    assert off.get("farm_key") is None
    small = KeyCache(ttl_s=5, max_keys=2, clock=lambda: now[0])
    for key in ("a", "b", "c"):
        small.put(key, tenant)
    assert [small.get(k) for k in ("a", "b", "c")] == [None, tenant, tenant]


def test_a_default_model_given_as_a_source_is_enabled_under_its_own_name() -> None:
    settings = Settings(model="simulated:0.25", models={"tiny-sdxl": "tiny-sdxl"})
    assert settings.models == {"tiny-sdxl": "tiny-sdxl", "simulated:0.25": "simulated:0.25"}
    assert "simulated:0.25" in settings.limits.models


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "no such model!"}, "FARM_MODEL='no such model!' is neither a name"),
        ({"models": {"x": "not a source"}}, "FARM_MODELS['x']"),
    ],
)
def test_a_configuration_that_cannot_work_fails_at_start(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Settings(**fields)
