"""The v1 jobs contract, in-process against real Postgres (rendering is tested end to end)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.keys import create_api_key
from models.db.tables import Item, Shard
from tests.conftest import ApiClient

SPEC = {"prompts": ["1girl", "1boy"], "buckets": ["1:1", "13:19", "19:13"], "seeds": [1, 2]}


def test_create_writes_job_items_shards_and_publishes_them(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    response = api.client.post("/v1/jobs", json=SPEC, headers=api.auth)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued" and job["total"] == 12 and job["done"] == 0
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    with sessions() as session:
        items = session.scalars(select(Item).where(Item.job_id == uuid.UUID(job["id"]))).all()
        shards = session.scalars(select(Shard).where(Shard.job_id == uuid.UUID(job["id"]))).all()
    assert len(items) == 12 and len(shards) == 3  # one shard per bucket (4 cells each)
    published = [api.publisher.queue.get_nowait() for _ in range(api.publisher.queue.qsize())]
    assert sorted(shard_id for _, shard_id in published) == sorted(s.id for s in shards)


def test_get_with_etag_and_304(api: ApiClient) -> None:
    job = api.client.post("/v1/jobs", json=SPEC, headers=api.auth).json()
    first = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth)
    assert first.status_code == 200
    body = first.json()
    for field in (
        "id",
        "status",
        "total",
        "done",
        "failed",
        "progress",
        "created_at",
        "started_at",
        "finished_at",
        "eta_seconds",
        "error",
    ):
        assert field in body
    etag = first.headers["etag"]
    again = api.client.get(f"/v1/jobs/{job['id']}", headers={**api.auth, "If-None-Match": etag})
    assert again.status_code == 304
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.auth)
    changed = api.client.get(f"/v1/jobs/{job['id']}", headers={**api.auth, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["status"] == "cancelled"


def test_another_tenants_job_is_404(api: ApiClient, sessions: sessionmaker[Session]) -> None:
    job = api.client.post("/v1/jobs", json=SPEC, headers=api.auth).json()
    with sessions.begin() as session:
        other = create_api_key(session, tenant_name=f"other-{uuid.uuid4().hex[:6]}")
    headers = {"Authorization": f"Bearer {other}"}
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/images"):
        assert api.client.get(path, headers=headers).status_code == 404
    assert api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers).status_code == 404
    assert api.client.get("/v1/jobs", headers=headers).json()["items"] == []


def test_idempotency_key(api: ApiClient) -> None:
    headers = {**api.auth, "Idempotency-Key": "abc-1"}
    first = api.client.post("/v1/jobs", json=SPEC, headers=headers)
    again = api.client.post("/v1/jobs", json=SPEC, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    published = api.publisher.queue.qsize()
    assert published == 3  # the replay published nothing
    other = api.client.post("/v1/jobs", json={**SPEC, "seeds": [3]}, headers=headers)
    assert other.status_code == 409
    assert other.json()["detail"][0]["field"] == "Idempotency-Key"


def test_bulk_creates_all_in_one_call(api: ApiClient) -> None:
    body = {"jobs": [SPEC, {"prompts": ["x"], "seeds": [1]}, {"prompts": ["y"]}]}
    response = api.client.post("/v1/jobs/bulk", json=body, headers=api.auth)
    assert response.status_code == 201, response.text
    out = response.json()
    assert len(out["ids"]) == 3
    assert [j["total"] for j in out["jobs"]] == [12, 1, 1]


def test_list_pages_with_cursor_newest_first(api: ApiClient) -> None:
    ids = [
        api.client.post(
            "/v1/jobs", json={"prompts": [f"p{i}"], "seeds": [1]}, headers=api.auth
        ).json()["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/v1/jobs", params=params, headers=api.auth).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    queued = api.client.get("/v1/jobs?status=queued&limit=1000", headers=api.auth).json()
    assert {j["id"] for j in queued["items"]} == set(ids)
    assert api.client.get("/v1/jobs?status=succeeded", headers=api.auth).json()["items"] == []


def test_images_page_before_rendering(api: ApiClient) -> None:
    job = api.client.post("/v1/jobs", json=SPEC, headers=api.auth).json()
    page = api.client.get(f"/v1/jobs/{job['id']}/images?limit=5", headers=api.auth).json()
    assert [i["index"] for i in page["items"]] == [0, 1, 2, 3, 4]
    first = page["items"][0]
    assert first["bucket"] == "1024x1024" and (first["width"], first["height"]) == (1024, 1024)
    assert first["status"] == "queued" and first["url"] is None and first["key"] is None
    rest = api.client.get(
        f"/v1/jobs/{job['id']}/images?limit=100&cursor={page['next_cursor']}", headers=api.auth
    ).json()
    assert [i["index"] for i in rest["items"]] == list(range(5, 12))
    assert rest["next_cursor"] is None


def test_cancel_queued_job(api: ApiClient, sessions: sessionmaker[Session]) -> None:
    job = api.client.post("/v1/jobs", json=SPEC, headers=api.auth).json()
    response = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.auth)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled" and body["cancelled"] == 12 and body["progress"] == 1.0
    with sessions() as session:
        statuses = set(
            session.scalars(select(Shard.status).where(Shard.job_id == uuid.UUID(job["id"])))
        )
    assert statuses == {"cancelled"}
    # Cancelling again is harmless.
    assert api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.auth).status_code == 200


def test_health_endpoints(api: ApiClient) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
