"""Scores end to end: a tiny scorer whose score is the image's mean brightness ranks a
rendered grid; the images API (``?order=score``), the manifest, the "best of" sheets
(their pixels) and the gallery in a real Chromium all give the order predicted from the
images themselves."""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import ClaimedShard
from models.db.finish import CellResult
from models.db.finish_extras import AnalysisRecord, record_extras
from models.db.tables import Item, utcnow
from models.domain.buckets import parse_bucket
from models.infra.settings import Settings
from models.infra.storage import (
    GALLERY_NAME,
    MANIFEST_NAME,
    best_sheet_name,
    job_folder,
    make_storage,
)
from tests.business import Tenant, render_all, tenant_app
from tests.tiny_scorer import brightness
from worker.best_of import best_sheet
from worker.contact_sheet import scale_to_height
from worker.job_layout import JobLayout
from worker.renderer import SimulatedRenderer

PROMPTS = ["1girl, solo", "1boy, solo"]
BUCKETS = ["1024x1024", "832x1216"]
SEEDS = [0, 1, 2, 3, 4]
LABELS = "bright>0.52, mid>0.51, dark"
K = 4


def _image(bucket: str, seed: int) -> Image.Image:
    size = parse_bucket(bucket)
    return SimulatedRenderer._draw(seed, size.width, size.height)


def _expected() -> list[dict[str, Any]]:
    """Every cell with the score the tiny scorer must give it (prompt × bucket × seed)."""
    cells: list[dict[str, Any]] = []
    for p in range(len(PROMPTS)):
        for bucket in BUCKETS:
            for seed in SEEDS:
                score = round(brightness(_image(bucket, seed)), 6)
                cells.append({"index": len(cells), "prompt_index": p, "score": score})
    return cells


def _ranked(cells: list[dict[str, Any]]) -> list[int]:
    return [c["index"] for c in sorted(cells, key=lambda c: (-c["score"], c["index"]))]


def _by_score(tenant: Tenant, job_id: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"order": "score", "limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = tenant.client.get(
            f"/v1/jobs/{job_id}/images", params=params, headers=tenant.auth
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _sheet_shows(
    sheet: Image.Image, layout: JobLayout, prompt: int, items: list[Item]
) -> list[int]:
    """Which cell each column of a best-of sheet shows: the closest in pixels."""
    boxes = best_sheet(layout, prompt, items).plan.cell_boxes[0]
    shown = []
    for box in boxes:
        crop = np.asarray(sheet.crop(box).resize((16, 16)), dtype=float)
        distance = {
            item.index: np.abs(
                np.asarray(scale_to_height(_image(item.bucket, item.seed)).resize((16, 16)), float)
                - crop
            ).mean()
            for item in items
        }
        shown.append(min(distance, key=lambda i: distance[i]))
    return shown


def test_api_manifest_best_of_sheets_and_gallery_agree(
    settings: Settings,
    sessions: sessionmaker[Session],
    tiny_scorer: Path,
    browser: Browser,
) -> None:
    changes: dict[str, Any] = {"scorer": str(tiny_scorer), "score_labels": LABELS, "best_of_k": K}
    with tenant_app(settings, sessions, **changes) as tenant:
        job = tenant.submit(prompts=PROMPTS, buckets=BUCKETS, seeds=SEEDS)
        render_all(tenant.settings, tenant.model)
        assert tenant.job(job["id"])["status"] == "succeeded"
        expected = _expected()
        order = _ranked(expected)
        labels = tenant.settings.score_label_map

        # The API: every image's score and label, best first across pages of 3.
        listed = _by_score(tenant, job["id"], limit=3)
        assert [i["index"] for i in listed] == order
        for item in listed:
            assert item["score"] == pytest.approx(expected[item["index"]]["score"], abs=1e-5)
            assert item["score_label"] == labels.label_for(item["score"])
        assert {i["score_label"] for i in listed} == {"bright", "mid", "dark"}
        assert [i["index"] for i in tenant.images(job["id"])] == list(range(len(expected)))
        _bad_requests(tenant, job["id"])

        # The manifest and each prompt's best-of sheet: its top K, in that order.
        folder = job_folder(
            prefix=tenant.settings.s3_prefix, tenant_id=tenant.id, job_id=uuid.UUID(job["id"])
        )
        storage = make_storage(tenant.settings)
        manifest = json.loads(storage.get(f"{folder}/{MANIFEST_NAME}"))
        assert [c["score_label"] for c in manifest["cells"]] == [
            i["score_label"] for i in sorted(listed, key=lambda i: i["index"])
        ]
        with sessions() as session:
            rows = list(session.scalars(select(Item).where(Item.job_id == job["id"])))
        layout = JobLayout(folder, PROMPTS, BUCKETS, SEEDS, tenant.model, 1)
        for p in range(len(PROMPTS)):
            top = [i for i in order if expected[i]["prompt_index"] == p][:K]
            [best] = [b for b in manifest["best_of"] if b["prompt"] == p]
            assert best["cells"] == top and best["sheet"] == best_sheet_name(p)
            sheet = Image.open(io.BytesIO(storage.get(f"{folder}/{best['sheet']}"))).convert("RGB")
            by_index = {r.index: r for r in rows}
            assert _sheet_shows(sheet, layout, p, [by_index[i] for i in top]) == top

        # The gallery in Chromium: the score view lists them in the same order.
        gallery = storage.get(f"{folder}/{GALLERY_NAME}").decode()
        page = browser.new_page()
        page.set_default_timeout(60_000)  # a busy machine
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_content(gallery)
        page.select_option("#order", "score")
        shown = page.eval_on_selector_all("#ranked img", "ns => ns.map(n => +n.dataset.index)")
        assert shown == order
        threshold = expected[order[5]]["score"]
        page.fill("#min-score", str(threshold))
        shown = page.eval_on_selector_all("#ranked img", "ns => ns.map(n => +n.dataset.index)")
        assert shown == [i for i in order if expected[i]["score"] >= threshold]
        page.fill("#min-score", "")
        page.select_option("#label-filter", "mid")
        shown = page.eval_on_selector_all("#ranked img", "ns => ns.map(n => +n.dataset.index)")
        assert shown == [i for i in order if labels.label_for(expected[i]["score"]) == "mid"]
        page.select_option("#order", "grid")  # the grid view dims what the filter leaves out
        dimmed = page.eval_on_selector_all("img.dim", "ns => ns.map(n => +n.dataset.index)")
        assert sorted(dimmed) == sorted(set(order) - set(shown))
        page.close()
        assert errors == []

        _recording_again_keeps_the_score(sessions, tenant, job["id"], rows[0])


def _bad_requests(tenant: Tenant, job_id: str) -> None:
    url = f"/v1/jobs/{job_id}/images"
    index_cursor = tenant.client.get(url, params={"limit": 1}, headers=tenant.auth).json()
    bad = [
        index_cursor["next_cursor"],  # another order's cursor
        base64.urlsafe_b64encode(b'["0.5", 3]').decode(),
        base64.urlsafe_b64encode(b"[1e999, 3]").decode(),
        base64.urlsafe_b64encode(b"[0.5, -1]").decode(),
        "not-a-cursor",
    ]
    for cursor in bad:
        response = tenant.client.get(
            url, params={"order": "score", "cursor": cursor}, headers=tenant.auth
        )
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["detail"][0]["field"] == "cursor"
    response = tenant.client.get(url, params={"order": "best"}, headers=tenant.auth)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "order"


def _recording_again_keeps_the_score(
    sessions: sessionmaker[Session], tenant: Tenant, job_id: str, item: Item
) -> None:
    """A late duplicate of a recorded cell (another worker's) changes nothing."""
    assert item.key is not None and item.score is not None
    shard = ClaimedShard(1, uuid.UUID(job_id), tenant.id, item.shard_index, tenant.model, 1)
    result = CellResult(item.index, item.key, "0" * 64, None, 1)
    late = AnalysisRecord(item.index, "score", "dark", 0.0, 1)
    with sessions.begin() as session:
        record_extras(
            session,
            shard=shard,
            results=[result],
            analyses=[late],
            device="cpu",
            now=utcnow(),
        )
    with sessions() as session:
        again = session.get(Item, (item.job_id, item.index))
    assert again is not None and (again.score, again.score_label) == (item.score, item.score_label)
