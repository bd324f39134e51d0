"""Bad requests get a 4xx that names the field and the reason, and store nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Job
from tests.conftest import ApiClient

GOOD: dict[str, Any] = {"prompts": ["1girl, solo"], "buckets": ["1024x1024"], "seeds": [1]}


def spec(**changes: Any) -> dict[str, Any]:
    body = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


BAD_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, body, field named in the error, words in the reason)
    ("prompts missing", spec(prompts=...), "prompts", "required"),
    ("prompts empty", spec(prompts=[]), "prompts", "at least 1"),
    ("prompts not a list", spec(prompts="1girl"), "prompts", "list"),
    ("prompt not a string", spec(prompts=[42]), "prompts.0", "string"),
    ("prompt blank", spec(prompts=["   "]), "prompts", "empty"),
    ("negative not a string", spec(negative_prompt=5), "negative_prompt", "string"),
    ("quality_tags not bool", spec(quality_tags="yes"), "quality_tags", "boolean"),
    ("buckets empty", spec(buckets=[]), "buckets", "at least 1"),
    ("unknown bucket", spec(buckets=["1000x1000"]), "buckets", "unknown bucket"),
    ("unknown aspect", spec(buckets=["3:2"]), "buckets", "unknown bucket"),
    ("bucket not a string", spec(buckets=[1024]), "buckets.0", "string"),
    ("repeated bucket", spec(buckets=["1:1", "1024x1024"]), "buckets", "repeated"),
    ("seeds empty", spec(seeds=[]), "seeds", "at least 1"),
    ("seed too large", spec(seeds=[2**32]), "seeds.0", "less than or equal"),
    ("seed negative", spec(seeds=[-2]), "seeds.0", "greater than or equal"),
    ("seed a float", spec(seeds=[1.5]), "seeds.0", "integer"),
    ("seed range count zero", spec(seeds={"start": 0, "count": 0}), "seeds.count", "greater"),
    (
        "seed range extra field",
        spec(seeds={"start": 0, "count": 2, "step": 1}),
        "seeds.step",
        "not permitted",
    ),
    ("steps zero", spec(steps=0), "steps", "greater than or equal to 1"),
    ("steps a string", spec(steps="28"), "steps", "integer"),
    ("steps over the limit", spec(steps=1000), "steps", "limit"),
    ("guidance negative", spec(guidance_scale=-1), "guidance_scale", "greater than or equal"),
    ("guidance absurd", spec(guidance_scale=1e9), "guidance_scale", "less than or equal"),
    ("unknown sampler", spec(sampler="warp drive"), "sampler", "euler"),
    ("unknown model", spec(model="sd15-pirate"), "model", "tiny-sdxl"),
    ("model as a path", spec(model="/etc/passwd"), "model", "enabled models"),
    ("unknown field", spec(prompt="typo"), "prompt", "not permitted"),
    ("priority unknown", spec(priority="urgent"), "priority", "high"),
    ("labels not strings", spec(labels={"a": 1}), "labels.a", "string"),
    ("name too long", spec(name="x" * 201), "name", "at most 200"),
    (
        "grid too large",
        spec(prompts=["a"] * 10, seeds={"start": 0, "count": 1001}),
        "prompts",
        "limit is 10000",
    ),
    ("too many seeds", spec(seeds={"start": 0, "count": 20000}), "seeds", "limit"),
    ("prompt too long", spec(prompts=["tag, " * 1000]), "prompts.0", "limit"),
    (
        "seed range past the end",
        spec(seeds={"start": 2**32 - 1, "count": 2}),
        "seeds",
        "largest seed",
    ),
]


def _jobs_stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.mark.parametrize(
    ("case", "body", "field", "reason"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_is_422_naming_the_field(
    api: ApiClient,
    sessions: sessionmaker[Session],
    case: str,
    body: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    before = _jobs_stored(sessions)
    response = api.client.post("/v1/jobs", json=body, headers=api.auth)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "invalid_request"
    fields = {d["field"]: d["reason"] for d in error["detail"]}
    assert field in fields, error
    assert reason.lower() in fields[field].lower(), error
    assert _jobs_stored(sessions) == before
    assert api.publisher.queue.empty()


def test_malformed_json_is_422_on_the_body(api: ApiClient) -> None:
    response = api.client.post(
        "/v1/jobs",
        content=b'{"prompts": [',
        headers={**api.auth, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body"


def test_body_that_is_not_an_object(api: ApiClient) -> None:
    response = api.client.post("/v1/jobs", json=["1girl"], headers=api.auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body"


def test_wrong_content_type_is_415(api: ApiClient) -> None:
    response = api.client.post(
        "/v1/jobs",
        content=b"prompts=1girl",
        headers={**api.auth, "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json()["detail"][0]["field"] == "content-type"


def test_no_key_is_401_and_a_bad_key_is_401(api: ApiClient) -> None:
    assert api.client.post("/v1/jobs", json=GOOD).status_code == 401
    response = api.client.get("/v1/jobs", headers={"Authorization": "Bearer farm_nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/jobs?limit=0", "limit"),
        ("/v1/jobs?limit=1001", "limit"),
        ("/v1/jobs?status=done", "status"),
        ("/v1/jobs?cursor=%%%", "cursor"),
        ("/v1/jobs?cursor=WzFd", "cursor"),
    ],
)
def test_bad_list_parameters(api: ApiClient, path: str, field: str) -> None:
    response = api.client.get(path, headers=api.auth)
    assert 400 <= response.status_code < 500
    assert response.json()["detail"][0]["field"] == field


def test_bulk_errors_name_the_job_and_store_nothing(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    before = _jobs_stored(sessions)
    body = {"jobs": [GOOD, spec(buckets=["9x9"]), spec(model="nope")]}
    response = api.client.post("/v1/jobs/bulk", json=body, headers=api.auth)
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["detail"]}
    assert "jobs.1.buckets" in fields
    assert _jobs_stored(sessions) == before
    body = {"jobs": [GOOD, spec(model="nope")]}
    response = api.client.post("/v1/jobs/bulk", json=body, headers=api.auth)
    assert {d["field"] for d in response.json()["detail"]} == {"jobs.1.model"}
    assert _jobs_stored(sessions) == before


def test_unknown_job_is_404(api: ApiClient) -> None:
    for path in ("/v1/jobs/00000000-0000-0000-0000-000000000000", "/v1/jobs/not-a-uuid"):
        response = api.client.get(path, headers=api.auth)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
