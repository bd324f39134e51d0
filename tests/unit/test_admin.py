"""The operator's side: the admin API (operator keys only), ``farm tenants`` on the
database, and the client commands that steer jobs (``farm pause|resume|priority|usage|
delete``) against a real API on a real port."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from farm.cli import app
from models.db.keys import create_api_key
from models.db.policies import load_policy, tenant_by_name
from models.domain.policy import ContentPolicy
from models.infra.settings import Settings, get_settings
from tests.business import OPERATOR, tenant_app
from tests.unit.test_cli import Farm, running_farm


def test_the_admin_api_takes_operator_keys_only(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with tenant_app(settings, sessions, admin_keys="") as off:
        answer = off.client.get("/v1/admin/tenants", headers=OPERATOR)
        assert answer.status_code == 404 and "FARM_ADMIN_KEYS" in answer.json()["message"]
    with tenant_app(settings, sessions) as tenant:
        client = tenant.client
        assert client.get("/v1/admin/tenants").status_code == 401
        assert client.get("/v1/admin/tenants", headers=tenant.auth).status_code == 403
        listed = client.get("/v1/admin/tenants", headers=OPERATOR).json()["items"]
        mine = next(t for t in listed if t["name"] == tenant.name)
        assert mine["keys"] == 1 and mine["policy"]["allowed_ratings"] is None

        body: dict[str, Any] = {
            "allowed_ratings": ["safe", "sensitive"],
            "forced_rating": "safe",
            "forced_negative": "nsfw",
            "screening_threshold": 0.8,
            "retention_s": 86400,
            "max_retention_s": 604800,
            "monthly_gpu_seconds": 36000,
        }
        url = f"/v1/admin/tenants/{tenant.name}/policy"
        put = client.put(url, json=body, headers=OPERATOR)
        assert put.status_code == 200, put.text
        assert {k: put.json()[k] for k in body} == body
        detail = client.get(f"/v1/admin/tenants/{tenant.name}", headers=OPERATOR).json()
        assert detail["policy"]["forced_rating"] == "safe"
        assert detail["budget"]["monthly_gpu_seconds"] == 36000
        assert client.put(url, json=body, headers=tenant.auth).status_code == 403

        for bad, field in [
            ({"allowed_ratings": ["safe"], "forced_rating": "nsfw"}, "body"),
            ({"screening_threshold": 2}, "screening_threshold"),
            ({"allowed_ratings": ["porn"]}, "allowed_ratings.0"),
            ({"retention_s": 0}, "retention_s"),
            ({"colour": "red"}, "colour"),
        ]:
            refused = client.put(url, json=bad, headers=OPERATOR)
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["detail"][0]["field"] == field, refused.json()
        assert (
            "forced_rating"
            in client.put(
                url, json={"allowed_ratings": ["safe"], "forced_rating": "nsfw"}, headers=OPERATOR
            ).json()["message"]
        )
        nobody = f"/v1/admin/tenants/nobody-{uuid.uuid4().hex}/policy"
        assert client.put(nobody, json={}, headers=OPERATOR).status_code == 404
        assert client.get("/v1/admin/tenants/a%00b", headers=OPERATOR).status_code == 404
        assert (
            client.post(
                f"/v1/admin/jobs/{uuid.uuid4()}/cells/0/release", headers=OPERATOR
            ).status_code
            == 404
        )
        cleared = client.put(url, json={}, headers=OPERATOR).json()
        assert cleared["forced_rating"] is None and cleared["allowed_ratings"] is None


def _farm(*args: str, settings: Settings) -> Result:
    env = {
        "FARM_DATABASE_URL": settings.database_url,
        "FARM_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "FARM_S3_BUCKET": settings.s3_bucket,
        "FARM_S3_PREFIX": settings.s3_prefix,
        "FARM_S3_ACCESS_KEY_ID": settings.s3_access_key_id,
        "FARM_S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key.get_secret_value(),
        "FARM_DATA_DIR": str(settings.data_dir),
    }
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args), env=env)
    finally:
        get_settings.cache_clear()


def test_farm_tenants(settings: Settings, sessions: sessionmaker[Session]) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    with sessions.begin() as session:
        create_api_key(session, tenant_name=name)
    changed = _farm(
        "tenants", "policy", name, "--allow", "safe", "--forced-rating", "safe",
        "--screening-threshold", "0.7", settings=settings,
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.output)["forced_rating"] == "safe"
    more = _farm("tenants", "policy", name, "--retention", "3600", settings=settings)
    assert json.loads(more.output)["screening_threshold"] == 0.7  # the other rules stay
    with sessions() as session:
        tenant = tenant_by_name(session, name=name)
        assert tenant is not None
        policy = load_policy(session, tenant_id=tenant.id)
    assert policy == ContentPolicy(
        allowed_ratings=frozenset({"safe"}),
        forced_rating="safe",
        screening_threshold=0.7,
        retention_s=3600,
    )
    bad = _farm("tenants", "policy", name, "--forced-rating", "nsfw", settings=settings)
    assert bad.exit_code == 2 and "forced_rating" in bad.output
    unset = _farm("tenants", "policy", name, "--unset", "retention_s", settings=settings)
    assert json.loads(unset.output)["retention_s"] is None
    listed = _farm("tenants", "list", settings=settings)
    assert listed.exit_code == 0 and name in listed.output
    held = _farm("tenants", "held", "--tenant", name, settings=settings)
    assert held.exit_code == 0, held.output
    not_held = _farm("tenants", "release", str(uuid.uuid4()), "0", settings=settings)
    assert not_held.exit_code == 2
    refused = _farm("tenants", "delete", name, settings=settings)
    assert refused.exit_code == 2 and "--yes" in refused.output
    deleted = _farm("tenants", "delete", name, "--yes", settings=settings)
    assert deleted.exit_code == 0, deleted.output
    with sessions() as session:
        assert tenant_by_name(session, name=name) is None
    key = _farm("keys", "encryption-key", settings=settings)
    assert key.exit_code == 0 and len(key.output.strip()) == 44


@pytest.fixture
def farm(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[Farm]:
    with running_farm(settings, sessions, seconds_per_image=2.0) as farm:
        yield farm


def test_the_client_commands_steer_a_job(farm: Farm) -> None:
    from farm.client import FarmClient

    with FarmClient(farm.url, farm.key) as client:
        job = client.submit({"prompts": ["1girl"], "seeds": [1, 2, 3, 4], "model": farm.model})
    paused = farm.run("pause", job["id"])
    assert paused.exit_code == 0 and "(paused)" in paused.output, paused.output
    status = farm.run("status", job["id"])
    assert "paused" in status.output and "True" in status.output
    boosted = farm.run("priority", job["id"], "high")
    assert boosted.exit_code == 0 and "priority high" in boosted.output
    bad = farm.run("priority", job["id"], "urgent")
    assert bad.exit_code == 2 and "priority" in bad.output
    assert farm.run("delete", job["id"]).exit_code == 2  # not finished: cancel first
    assert farm.run("resume", job["id"]).exit_code == 0
    with FarmClient(farm.url, farm.key) as client:
        client.cancel(job["id"])
    assert farm.run("delete", job["id"]).exit_code == 0
    usage = farm.run("usage", "--group-by", "model")
    assert usage.exit_code == 0 and "total" in usage.output, usage.output
