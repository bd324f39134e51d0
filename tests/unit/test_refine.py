"""Refinements with real parts: a grid rendered by a real runner on the tiny SDXL model,
refined through the API into child jobs; a hi-res child starts from the parent's PNGs."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from models.db.keys import create_api_key
from models.db.tables import Item, Job
from models.domain.infotext import parse_infotext
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from models.infra.storage import MANIFEST_NAME, job_folder, make_storage
from tests.conftest import ApiClient
from worker.hires import hires_size
from worker.job_layout import load_layout
from worker.renderer import DiffusersRenderer, RenderBatch
from worker.runtime import build_runner, close_runner, load_renderer

PARENT = {
    "prompts": ["1girl, solo", "1boy, outdoors"],
    "buckets": ["832x1216"],
    "seeds": [11, 12],
    "steps": 2,
}
HIRES = {"scale": 1.25, "strength": 0.5, "steps": 2}


@pytest.fixture
def model() -> str:
    return f"refine-{uuid.uuid4().hex[:6]}"  # a model no other test's worker serves


@pytest.fixture
def settings(settings: Settings, model: str) -> Settings:
    return settings.model_copy(update={"models": {**settings.models, model: "tiny-sdxl"}})


def render_all(settings: Settings, model: str) -> None:
    runner = build_runner(settings, warm_models=[])
    try:
        while runner.run_next(model).value != "nothing":
            pass
        runner.drain()
    finally:
        close_runner(runner)


def items(sessions: sessionmaker[Session], job_id: str) -> list[Item]:
    with sessions() as session:
        query = select(Item).where(Item.job_id == uuid.UUID(job_id)).order_by(Item.index)
        return list(session.scalars(query))


def submit(api: ApiClient, model: str, **changes: Any) -> dict[str, Any]:
    r = api.client.post("/v1/jobs", json={**PARENT, "model": model, **changes}, headers=api.auth)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def refine(api: ApiClient, job_id: str, body: dict[str, Any], status: int = 201) -> Any:
    r = api.client.post(f"/v1/jobs/{job_id}/refine", json=body, headers=api.auth)
    assert r.status_code == status, r.text
    return r.json()


def fields(response: Any) -> list[str]:
    return [d["field"] for d in response["detail"]]


def test_a_hires_child_starts_from_the_parents_pngs_and_names_its_parent(
    api: ApiClient, sessions: sessionmaker[Session], model: str
) -> None:
    settings = api.settings
    parent = submit(api, model)
    render_all(settings, model)
    rendered = items(sessions, parent["id"])
    assert [i.status for i in rendered] == ["done"] * 4

    # A dry run prices it: the hi-res pass alone costs less than a re-render with it.
    url = f"/v1/jobs/{parent['id']}/refine?dry_run=true"
    body = {"cells": [0, 1, 3], "hires": HIRES}
    reuse = api.client.post(url, json=body, headers=api.auth).json()
    full = api.client.post(url, json={**body, "set": {"steps": 2}}, headers=api.auth).json()
    assert reuse["total"] == full["total"] == 3
    assert 0 < reuse["estimated_gpu_seconds"] < full["estimated_gpu_seconds"]
    child = refine(api, parent["id"], body)
    render_all(settings, model)
    more = refine(api, parent["id"], {"cells": [2], "more_like": 2})  # not rendered here

    # The hi-res child: 3 cells at the upscaled size, each naming its parent cell, each
    # started from the parent's PNG (the worker checked the bytes against this sha256).
    cells = items(sessions, child["id"])
    assert [c.status for c in cells] == ["done"] * 3
    assert [c.parent_index for c in cells] == [0, 1, 3]
    assert {c.parent_job_id for c in cells} == {parent["id"]}
    by_index = {i.index: i for i in rendered}
    assert [c.base_sha256 for c in cells] == [by_index[i].sha256 for i in (0, 1, 3)]
    assert [c.seed for c in cells] == [by_index[i].seed for i in (0, 1, 3)]
    storage = make_storage(settings)
    pngs = [Image.open(io.BytesIO(storage.get(c.key or ""))) for c in cells]
    assert {p.size for p in pngs} == {hires_size(832, 1216, 1.25)} == {(1040, 1520)}
    info = parse_infotext(pngs[1].info["parameters"])
    assert (info.parent_job_id, info.parent_index) == (parent["id"], 1)
    assert info.base_sha256 == by_index[1].sha256
    assert f"Parent: {parent['id']}#1" in pngs[1].info["parameters"]
    assert "Hires upscaler: Lanczos" in pngs[1].info["parameters"]

    # The base it started from is what a re-render of the base pass gives: same pixels.
    renderer = load_renderer("tiny-sdxl", settings)
    assert isinstance(renderer, DiffusersRenderer)
    first = by_index[0]
    again = renderer.render(
        RenderBatch.of(
            prompts=[first.prompt],
            negative_prompts=[first.negative_prompt],
            seeds=[first.seed],
            width=832,
            height=1216,
            steps=2,
            guidance_scale=first.guidance_scale,
            sampler=first.sampler,
        )
    )[0]
    stored = Image.open(io.BytesIO(storage.get(first.key or ""))).convert("RGB")
    diff = np.abs(np.asarray(again, dtype=np.int16) - np.asarray(stored, dtype=np.int16))
    assert diff.max() <= 1  # a batch of 2 vs one image: at most one 8-bit level apart

    # more_like: new seeds for the same prompt and bucket, each rendered from scratch.
    similar = items(sessions, more["id"])
    assert len(similar) == 2
    assert {(c.prompt, c.bucket, c.parent_index) for c in similar} == {
        (by_index[2].prompt, "832x1216", 2)
    }
    assert by_index[2].seed not in {c.seed for c in similar} and len({c.seed for c in similar}) == 2
    assert all(c.base_sha256 is None for c in similar)

    # The views: the parent lists its children, each child names its parent.
    view = api.client.get(f"/v1/jobs/{parent['id']}", headers=api.auth).json()
    assert view["children"] == [child["id"], more["id"]]
    assert view["parent_job_id"] is None
    assert (
        api.client.get(f"/v1/jobs/{child['id']}", headers=api.auth).json()["parent_job_id"]
        == (parent["id"])
    )
    # The child's manifest names each cell's parent cell.
    with sessions() as session:
        job = session.get(Job, uuid.UUID(child["id"]))
        assert job is not None
        manifest = _manifest(settings, job.tenant_id, job.id)
    assert [(c["parent_job_id"], c["parent_index"]) for c in manifest["cells"]] == [
        (parent["id"], i) for i in (0, 1, 3)
    ]
    # Each parent cell's sheet is labelled with that cell's own seed and bucket.
    with sessions() as session:
        layout = load_layout(
            session, job_id=job.id, tenant_id=job.tenant_id, prefix=settings.s3_prefix
        )
    assert layout is not None
    assert [layout.seeds_for(g) for g in range(3)] == [[by_index[i].seed] for i in (0, 1, 3)]
    assert [layout.buckets_for(g) for g in range(3)] == [["832x1216"]] * 3


def test_selections_and_overrides_make_the_child_cells(
    api: ApiClient, sessions: sessionmaker[Session], model: str
) -> None:
    parent = submit(api, model, steps=[2, 3])  # 8 cells: 2 prompts x 2 seeds x 2 steps
    child = refine(
        api, parent["id"], {"where": "prompt_index=1&steps=3", "set": {"sampler": "dpmpp_2m"}}
    )
    cells = items(sessions, child["id"])
    assert [(c.parent_index, c.steps, c.sampler) for c in cells] == [
        (5, 3, "dpmpp_2m"),
        (7, 3, "dpmpp_2m"),
    ]
    assert all(c.base_sha256 is None for c in cells)  # overrides re-render the base pass
    sweep = refine(api, parent["id"], {"cells": [0], "set": {"guidance_scale": [4.0, 9.0]}})
    assert [c.guidance_scale for c in items(sessions, sweep["id"])] == [4.0, 9.0]

    # An Idempotency-Key replays the same child; with another body it is a conflict.
    url, again = f"/v1/jobs/{parent['id']}/refine", {**api.auth, "Idempotency-Key": "r1"}
    body = {"cells": [1], "more_like": 2}
    made = api.client.post(url, json=body, headers=again)
    replay = api.client.post(url, json=body, headers=again)
    assert (made.status_code, replay.status_code) == (201, 200)
    assert replay.json()["id"] == made.json()["id"]
    assert api.client.post(url, json={**body, "more_like": 3}, headers=again).status_code == 409
    children = api.client.get(f"/v1/jobs/{parent['id']}", headers=api.auth).json()["children"]
    assert children == [child["id"], sweep["id"], made.json()["id"]]  # the replay is not a child

    # top: the best by score (NULL scores never picked), per prompt if asked.
    with sessions.begin() as session:
        for index, score in ((1, 0.9), (2, 0.5), (6, 0.7), (7, 0.8)):
            session.execute(
                update(Item)
                .where(Item.job_id == uuid.UUID(parent["id"]), Item.index == index)
                .values(score=score)
            )
    best = refine(api, parent["id"], {"top": 3, "more_like": 1})
    assert [c.parent_index for c in items(sessions, best["id"])] == [1, 7, 6]
    per_prompt = refine(api, parent["id"], {"top": 1, "per_prompt": True, "more_like": 1})
    assert [c.parent_index for c in items(sessions, per_prompt["id"])] == [1, 7]


def test_bad_selections_are_422s_naming_the_field(api: ApiClient, model: str) -> None:
    parent = submit(api, model)
    job = parent["id"]
    assert fields(refine(api, job, {"cells": [0, 99], "hires": True}, 422)) == ["cells"]
    assert fields(refine(api, job, {"where": {"nope": 1}, "hires": True}, 422)) == ["where.nope"]
    assert fields(refine(api, job, {"where": "bucket=1024x1024", "hires": True}, 422)) == ["where"]
    assert fields(refine(api, job, {"cells": [0]}, 422)) == ["hires"]
    assert fields(refine(api, job, {"hires": True}, 422)) == ["cells"]
    assert fields(refine(api, job, {"cells": [0], "set": {"steps": 100_000}}, 422)) == ["set.steps"]
    assert fields(refine(api, job, {"cells": [0], "set": {"prompts": ["x"]}}, 422)) == [
        "set.prompts"
    ]
    assert fields(refine(api, job, {"top": 2, "hires": True}, 422)) == ["top"]
    assert fields(refine(api, job, {"cells": [0], "more_like": 0}, 422)) == ["more_like"]
    sweep = {"where": "seed=11", "more_like": 1000, "set": {"steps": [2, 3, 4, 5, 6, 7]}}
    too_many = refine(api, job, sweep, 422)  # 2 cells x 1000 seeds x 6 steps
    assert fields(too_many) == ["cells"] and "12000 cells" in too_many["message"]
    # A hi-res pass needs the parent's image: not rendered yet is a conflict, for now.
    assert fields(refine(api, job, {"cells": [1], "hires": True}, 409)) == ["cells"]
    # Overrides re-render the base pass: allowed before the parent renders.
    refine(api, job, {"cells": [1], "hires": True, "set": {"steps": 3}})


def test_another_tenants_job_is_404_and_over_quota_is_429(
    api: ApiClient, settings: Settings, sessions: sessionmaker[Session], model: str
) -> None:
    parent = submit(api, model)  # 4 queued cells
    with sessions.begin() as session:
        other = create_api_key(session, tenant_name=f"other-{uuid.uuid4().hex[:8]}")
    r = api.client.post(
        f"/v1/jobs/{parent['id']}/refine",
        json={"cells": [0], "more_like": 1},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert r.status_code == 404, r.text

    tight = settings.model_copy(update={"max_active_cells": 5})
    with TestClient(create_app(tight, publisher=LocalPublisher())) as client:
        url = f"/v1/jobs/{parent['id']}/refine"
        ok = client.post(url, json={"cells": [0], "more_like": 1}, headers=api.auth)
        assert ok.status_code == 201, ok.text  # 5 cells active: at the limit
        over = client.post(url, json={"cells": [0], "more_like": 1}, headers=api.auth)
        assert over.status_code == 429, over.text
        assert "Retry-After" in over.headers


def _manifest(settings: Settings, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Any:
    folder = job_folder(prefix=settings.s3_prefix, tenant_id=tenant_id, job_id=job_id)
    return json.loads(make_storage(settings).get(f"{folder}/{MANIFEST_NAME}"))


def test_the_job_pages_form_refines_through_the_same_path(
    api: ApiClient, sessions: sessionmaker[Session], model: str
) -> None:
    parent = submit(api, model)
    url = f"/web/jobs/{parent['id']}/refine"
    form = {"top": "8", "more_like": "1", "steps": "3"}
    refused = api.client.post(url, data=form, headers=api.auth, follow_redirects=False)
    assert refused.status_code == 422 and "no selected cell has a score" in refused.text
    with sessions.begin() as session:
        session.execute(
            update(Item)
            .where(Item.job_id == uuid.UUID(parent["id"]), Item.index.in_([1, 2]))
            .values(score=0.5)
        )
    made = api.client.post(url, data=form, headers=api.auth, follow_redirects=False)
    assert made.status_code == 303, made.text
    child = made.headers["location"].rsplit("/", 1)[-1]
    assert [(c.parent_index, c.steps) for c in items(sessions, child)] == [(1, 3), (2, 3)]
    ticked = {"cells": "0,3", "sampler": "dpmpp_2m", "guidance_scale": "x"}
    bad = api.client.post(url, data=ticked, headers=api.auth, follow_redirects=False)
    assert bad.status_code == 422 and "set.guidance_scale" in bad.text
