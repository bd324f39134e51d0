"""The web routes' guards, in-process: who may see a job's files, and which posts count."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session, sessionmaker

from models.db.keys import create_api_key
from tests.conftest import ApiClient

SPEC = {"prompts": ["1girl"], "buckets": ["1:1"], "seeds": [1]}


def test_files_and_state_need_the_jobs_tenant(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    job = api.client.post("/v1/jobs", json=SPEC, headers=api.auth).json()
    assert job["links"]["gallery"] == f"/web/jobs/{job['id']}/files/index.html"
    assert job["links"]["contact_sheets"] == f"/web/jobs/{job['id']}/sheets"
    state = f"/web/jobs/{job['id']}/state"
    assert api.client.get(state, headers=api.auth).json()["gallery_ready"] is False
    assert api.client.get(state).status_code == 401  # neither key nor cookie
    with sessions.begin() as session:
        other = create_api_key(session, tenant_name=f"other-{uuid.uuid4().hex[:8]}")
    for path in (state, job["links"]["gallery"], job["links"]["contact_sheets"]):
        response = api.client.get(path, headers={"Authorization": f"Bearer {other}"})
        assert response.status_code == 404, path  # another tenant's job does not exist
    sheets = api.client.get(job["links"]["contact_sheets"], headers=api.auth).json()["items"]
    assert sheets == [
        {
            "prompt_index": 0,
            "prompt": "masterpiece, best quality, very aesthetic, absurdres, 1girl",
            "url": f"/web/jobs/{job['id']}/files/sheets/prompt_000.jpg",
        }
    ]
    # Not written yet, and nothing outside the job folder is reachable.
    files = f"/web/jobs/{job['id']}/files"
    assert api.client.get(f"{files}/index.html", headers=api.auth).status_code == 404
    assert api.client.get(f"{files}/../{job['id']}/x", headers=api.auth).status_code == 404
    assert api.client.get(f"{files}/thumbs/%2e%2e/x", headers=api.auth).status_code == 404


def test_login_sets_an_httponly_cookie_and_pages_need_it(api: ApiClient) -> None:
    client = api.client
    page = client.get("/web/jobs", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/web/jobs"
    refused = client.post(
        "/login",
        content="api_key=farm_nope",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 401 and "not valid" in refused.text
    cross_site = client.post(
        "/login",
        content=f"api_key={api.key}",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://evil.example",
        },
        follow_redirects=False,
    )
    assert cross_site.status_code == 403
    signed_in = client.post(
        "/login",
        content=f"api_key={api.key}&next=//evil.example/",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/web/jobs"
    cookie = signed_in.headers["set-cookie"]
    assert "farm_key=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert client.get("/web/jobs").status_code == 200  # the client kept the cookie
    form = client.get("/web/jobs/new")
    assert form.status_code == 200 and 'value="832x1216"' in form.text


def test_the_form_reports_the_specs_own_errors(api: ApiClient) -> None:
    api.client.cookies.set("farm_key", api.key)
    response = api.client.post(
        "/web/jobs/new",
        content="prompts=&buckets=1024x1024&seeds=x&steps=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422
    assert "prompts" in response.text and "seeds" in response.text
    created = api.client.post(
        "/web/jobs/new",
        content="prompts=1girl%0A1boy&buckets=1024x1024&buckets=832x1216&seeds=1+2&steps=2",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert created.status_code == 303
    job_id = created.headers["location"].rsplit("/", 1)[-1]
    job = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth).json()
    assert job["total"] == 2 * 2 * 2
