"""The job-artifacts listener on real Postgres and S3: two workers share one job.

Shards of one prompt land on different workers; each worker's sheets are
composed from what is in storage, so the final sheets show every cell, and the
manifest and gallery list every image with its sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import uuid
from importlib import metadata

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import ClaimedShard
from models.db.tables import Job
from models.domain.status import JobStatus
from models.infra.settings import Settings
from models.infra.storage import GALLERY_NAME, MANIFEST_NAME, Storage, job_folder, make_storage
from tests.conftest import ApiClient
from tests.s3_servers import client_for
from worker.contact_sheet import plan_layout, scale_to_height
from worker.job_artifacts import JobArtifacts
from worker.runtime import build_runner, close_runner
from worker.shard_runner import Outcome, ShardRunner

# A model of this test's own: the shared test database holds other tests' queued shards.
MODEL = f"sim-{uuid.uuid4().hex[:8]}"
SPEC = {
    "name": "two workers",
    "prompts": ["1girl, solo", "1boy, solo"],
    "buckets": ["1:1", "13:19"],
    "seeds": [5, 6],
    "model": MODEL,
    "style": "Anime",
}


def _artifacts(runner: ShardRunner) -> JobArtifacts:
    return next(x for x in runner.listeners if isinstance(x, JobArtifacts))


def _render_on_two_workers(settings: Settings) -> tuple[JobArtifacts, JobArtifacts]:
    workers = [build_runner(settings, warm_models=[MODEL]) for _ in range(2)]
    try:
        idle = 0
        turn = 0
        while idle < 2:  # alternate: each worker takes the next shard in turn
            outcome = workers[turn % 2].run_next(MODEL)
            idle = idle + 1 if outcome == Outcome.NOTHING else 0
            workers[turn % 2].drain()
            turn += 1
    finally:
        for worker in workers:
            close_runner(worker)
    return _artifacts(workers[0]), _artifacts(workers[1])


def test_sheets_manifest_and_gallery_from_two_workers(
    api: ApiClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    settings.models[MODEL] = "simulated:0.01"  # shared with the api fixture's settings
    settings = settings.model_copy(update={"sheet_interval_s": 60.0})  # only event-driven
    job = api.client.post("/v1/jobs", json=SPEC, headers=api.auth).json()
    a, b = _render_on_two_workers(settings)
    assert a.counters.thumbs and b.counters.thumbs  # both workers rendered cells
    assert a.counters.thumbs + b.counters.thumbs == 8
    # A prompt's sheet was drawn when its last cell landed, not only at the end.
    assert a.counters.sheets + b.counters.sheets >= 2 + 2

    with sessions() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None and row.status == "succeeded"
        folder = job_folder(prefix=settings.s3_prefix, tenant_id=row.tenant_id, job_id=row.id)
    storage = make_storage(settings)
    manifest = json.loads(storage.get(f"{folder}/{MANIFEST_NAME}"))
    assert manifest["job"]["id"] == job["id"] and manifest["job"]["status"] == "succeeded"
    assert manifest["model"] == {"name": MODEL, "revision": "simulated:0.01"}
    assert manifest["spec"]["prompts"] == SPEC["prompts"]
    assert manifest["grid"]["seeds"] == [5, 6]
    # What the style meant when the job was made, and each cell's style.
    assert manifest["grid"]["styles"]["Anime"]["prompt"].startswith("{prompt}, anime artwork")
    assert {c["style"] for c in manifest["cells"]} == {"Anime"}
    assert ["style", "style"] in manifest["cell_fields"]  # the gallery's table lists it
    # The environment the pixels came from.
    environment = manifest["environment"]
    assert set(environment) == {"farm", "python", "torch", "diffusers", "transformers", "device"}
    assert environment["device"] == "cpu" and environment["farm"].startswith("farm ")
    assert environment["diffusers"] == metadata.version("diffusers")
    assert len(manifest["cells"]) == 8
    pngs: dict[int, Image.Image] = {}
    for cell in manifest["cells"]:
        data = storage.get(cell["key"])
        assert cell["status"] == "done" and hashlib.sha256(data).hexdigest() == cell["sha256"]
        assert cell["prompt"].endswith("studio anime, highly detailed")
        assert cell["key"] == f"{folder}/{cell['file']}"
        assert storage.exists(f"{folder}/{cell['thumb']}")
        pngs[cell["index"]] = Image.open(io.BytesIO(data))

    # Every cell of every sheet shows its own image (from whichever worker made it).
    for prompt, sheet_name in enumerate(manifest["contact_sheets"]):
        sheet = Image.open(io.BytesIO(storage.get(f"{folder}/{sheet_name}"))).convert("RGB")
        layout = plan_layout(
            title=f"prompt {prompt + 1} of 2 · {SPEC['prompts'][prompt]}",
            column_labels=["1024x1024", "832x1216"],
            column_sizes=[(1024, 1024), (832, 1216)],
            row_labels=["seed 5", "seed 6"],
            footer=f"4 of 4 images · {MODEL}",
        )
        assert sheet.size == layout.size
        for cell in manifest["cells"][prompt * 4 : prompt * 4 + 4]:
            row_, col = cell["index"] % 2, (cell["index"] // 2) % 2
            got = np.asarray(sheet.crop(layout.cell_boxes[row_][col])).astype(int)
            want = np.asarray(scale_to_height(pngs[cell["index"]])).astype(int)
            assert np.abs(got - want).mean() < 3, (prompt, cell["index"])

    html = storage.get(f"{folder}/{GALLERY_NAME}").decode()
    inline = re.search(r'<script type="application/json" id="farm-data">(.*?)</script>', html, re.S)
    assert inline is not None and json.loads(inline.group(1)) == manifest


def test_the_manifest_is_rewritten_identically(
    api: ApiClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    settings.models[MODEL] = "simulated:0.01"  # shared with the api fixture's settings
    job = api.client.post("/v1/jobs", json={**SPEC, "prompts": ["1girl"]}, headers=api.auth).json()
    _render_on_two_workers(settings)
    with sessions() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None
        folder = job_folder(prefix=settings.s3_prefix, tenant_id=row.tenant_id, job_id=row.id)
        shard = ClaimedShard(0, row.id, row.tenant_id, 0, row.model, 1)
    storage = make_storage(settings)
    first = storage.get(f"{folder}/{MANIFEST_NAME}")
    gallery = storage.get(f"{folder}/{GALLERY_NAME}")
    # Another worker (a fresh listener, nothing in memory) finishing the same job again.
    # No sleep before it: the rewrite is milliseconds later (a new listener, several
    # queries), so a manifest stamped with its time of writing would differ below.
    again = JobArtifacts(settings=settings, sessions=sessions, storage=storage)
    again.job_finished(shard, JobStatus.SUCCEEDED)
    again.close()
    assert again.counters.jobs_finished == 1
    assert storage.get(f"{folder}/{MANIFEST_NAME}") == first
    assert storage.get(f"{folder}/{GALLERY_NAME}") == gallery
    # Its sheets came from the thumbnails in storage: none had to be made again.
    assert again.counters.thumbs == 0 and again.counters.sheets == 1
    s3 = client_for(settings)
    listing = s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"{folder}/thumbs/")
    assert len(listing.get("Contents", [])) == 4


class _GatedStorage:
    """Real storage whose first thumbnail upload waits for ``open``: the artifacts
    thread falls behind while the writer keeps handing it shards."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.open = threading.Event()

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        if "/thumbs/" in key:
            assert self.open.wait(timeout=60)
        self.inner.put(key, data, content_type=content_type)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def url(self, key: str, *, expires_s: int) -> str:
        return self.inner.url(key, expires_s=expires_s)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)


def test_shards_that_land_while_the_thread_is_behind_are_taken_together(
    api: ApiClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    model = f"sim-{uuid.uuid4().hex[:8]}"
    settings.models[model] = "simulated:0.01"
    settings = settings.model_copy(update={"sheet_interval_s": 60.0, "batch_size": 1})
    job = api.client.post("/v1/jobs", json={**SPEC, "model": model}, headers=api.auth).json()
    runner = build_runner(settings, warm_models=[model])
    artifacts = _artifacts(runner)
    gate = _GatedStorage(artifacts.storage)
    artifacts.storage = gate
    try:
        while runner.run_next(model) != Outcome.NOTHING:
            pass
        runner.drain()  # all 8 shards written and handed over; thumbnails wait
        gate.open.set()
        artifacts.drain()
    finally:
        close_runner(runner)
    assert artifacts.counters.thumbs == 8
    # The first shard(s) held the thread; those behind them were handled in one go
    # (one by one, it would take eight).
    assert artifacts.counters.landed_batches in (1, 2)
    with sessions() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None and row.status == "succeeded"
        folder = job_folder(prefix=settings.s3_prefix, tenant_id=row.tenant_id, job_id=row.id)
    manifest = json.loads(gate.get(f"{folder}/{MANIFEST_NAME}"))
    assert len(manifest["cells"]) == 8
    assert all(gate.exists(f"{folder}/{cell['thumb']}") for cell in manifest["cells"])
    assert all(gate.exists(f"{folder}/{sheet}") for sheet in manifest["contact_sheets"])
