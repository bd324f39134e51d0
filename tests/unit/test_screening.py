"""Output screening: a tiny classifier (built offline, loaded like a Hub model) flags one
image of a job; it is held (stored privately, not listed, not on sheets or in the
gallery, no URL) until an operator releases it."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.artifacts import sheet_cells
from models.db.business_tables import CellAnalysis
from models.db.webhook_tables import WebhookDelivery
from models.infra.held_storage import held_folder
from models.infra.settings import Settings
from models.infra.storage import GALLERY_NAME, MANIFEST_NAME, job_folder, make_storage
from tests.business import OPERATOR, bucket_keys, render_all, tenant_app
from tests.tiny_classifier import CLEAN_SCORE, FLAGGED_SCORE, build_tiny_classifier, mean_red
from worker.classifier import HfImageClassifier
from worker.renderer import SimulatedRenderer
from worker.runtime import build_runner, close_runner

# Seed 0's simulated 1024² image is mostly red (the tiny classifier flags it), seed 1's
# is not; the first test below proves it, so the others may rely on it.
FLAGGED_SEED, CLEAN_SEED = 0, 1


def test_the_tiny_classifier_flags_the_red_image(tmp_path: Path) -> None:
    folder = build_tiny_classifier(tmp_path / "tiny-nsfw")
    classifier = HfImageClassifier(str(folder), flagged=["NSFW"], device="cpu")
    images = [SimulatedRenderer._draw(seed, 1024, 1024) for seed in (FLAGGED_SEED, CLEAN_SEED)]
    assert mean_red(images[0]) > 128 > mean_red(images[1])
    flagged, clean = classifier.analyze(images)
    assert (flagged.label, clean.label) == ("nsfw", "normal")
    assert abs(flagged.score - FLAGGED_SCORE) < 1e-3 and abs(clean.score - CLEAN_SCORE) < 1e-3


def test_a_held_image_is_hidden_until_an_operator_releases_it(
    settings: Settings, sessions: sessionmaker[Session], tiny_classifier: Path
) -> None:
    with tenant_app(
        settings,
        sessions,
        screening_model=str(tiny_classifier),
        artifact_refresh_s=0.1,
        sheet_interval_s=60.0,
    ) as tenant:
        client, settings = tenant.client, tenant.settings
        policy = client.put(
            f"/v1/admin/tenants/{tenant.name}/policy",
            json={"screening_threshold": 0.5},
            headers=OPERATOR,
        )
        assert policy.status_code == 200, policy.text
        job = tenant.submit(
            seeds=[FLAGGED_SEED, CLEAN_SEED], webhook_url="https://hooks.example.com/farm"
        )
        render_all(settings, tenant.model)
        job_id = uuid.UUID(job["id"])
        view = tenant.job(job["id"])
        assert (view["status"], view["done"], view["held"]) == ("succeeded", 2, 1)

        # The images API lists only the clean cell; the held one has no URL anywhere.
        [listed] = tenant.images(job["id"])
        assert listed["seed"] == CLEAN_SEED and listed["url"]
        assert listed["analysis"]["screening"]["label"] == "normal"
        folder = job_folder(prefix=settings.s3_prefix, tenant_id=tenant.id, job_id=job_id)
        private = held_folder(prefix=settings.s3_prefix, tenant_id=tenant.id, job_id=job_id)
        [held_key] = bucket_keys(settings, private + "/")
        public = bucket_keys(settings, folder + "/")
        assert held_key.endswith(f"_s{FLAGGED_SEED}.png")
        assert not any(f"_s{FLAGGED_SEED}." in key for key in public)  # no image, no thumb
        storage = make_storage(settings)
        manifest = json.loads(storage.get(f"{folder}/{MANIFEST_NAME}"))
        assert [c["seed"] for c in manifest["cells"]] == [CLEAN_SEED]
        gallery = storage.get(f"{folder}/{GALLERY_NAME}").decode()
        assert f"_s{FLAGGED_SEED}." not in gallery and f"_s{CLEAN_SEED}." in gallery
        with sessions() as session:
            sheet = sheet_cells(session, job_id=job_id, prompt=0, variants=1, seeds=2, rows=2)
            analyses = session.scalars(
                select(CellAnalysis).where(CellAnalysis.job_id == job_id)
            ).all()
            events = session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
            ).all()
        assert [(c.status, c.key) for c in sheet] == [("held", None), ("done", listed["key"])]
        assert sorted((a.cell_index, a.label) for a in analyses) == [(0, "nsfw"), (1, "normal")]
        assert all(a.analyzer == "screening" and a.analysis_ms >= 0 for a in analyses)
        [held_event] = [e for e in events if e.event == "cell.held"]
        assert held_event.payload["cell"]["index"] == 0
        assert held_event.payload["cell"]["analysis"]["screening"]["label"] == "nsfw"

        # The operator sees it (a short-lived URL), a tenant key may not.
        assert client.get("/v1/admin/held", headers=tenant.auth).status_code == 403
        review = client.get(f"/v1/admin/held?tenant={tenant.name}", headers=OPERATOR).json()
        [item] = review["items"]
        assert item["cell"]["index"] == 0 and item["cell"]["url"]
        assert item["cell"]["analysis"]["screening"]["score"] > 0.5

        release = client.post(f"/v1/admin/jobs/{job_id}/cells/0/release", headers=OPERATOR)
        assert release.status_code == 200, release.text
        assert (
            client.post(f"/v1/admin/jobs/{job_id}/cells/0/release", headers=OPERATOR).status_code
            == 404
        )  # released already
        assert tenant.job(job["id"])["held"] == 0
        listed_now = tenant.images(job["id"])
        assert [c["seed"] for c in listed_now] == [FLAGGED_SEED, CLEAN_SEED]
        assert listed_now[0]["url"] and listed_now[0]["released"] is True
        assert bucket_keys(settings, private + "/") == []

        # Any worker redraws the job's sheets, manifest and gallery with it (its
        # job-artifacts thread looks for such jobs whenever it is idle).
        runner = build_runner(settings, warm_models=[tenant.model])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                manifest = json.loads(storage.get(f"{folder}/{MANIFEST_NAME}"))
                if len(manifest["cells"]) == 2:
                    break
                time.sleep(0.05)
        finally:
            close_runner(runner)
        assert [c["seed"] for c in manifest["cells"]] == [FLAGGED_SEED, CLEAN_SEED]
        assert any(key.endswith(f"s{FLAGGED_SEED}.jpg") for key in bucket_keys(settings, folder))


def test_a_deleted_held_image_is_gone_for_good(
    settings: Settings, sessions: sessionmaker[Session], tiny_classifier: Path
) -> None:
    with tenant_app(settings, sessions, screening_model=str(tiny_classifier)) as tenant:
        client = tenant.client
        client.put(
            f"/v1/admin/tenants/{tenant.name}/policy",
            json={"screening_threshold": 0.5},
            headers=OPERATOR,
        )
        job = tenant.submit(seeds=[FLAGGED_SEED])
        render_all(tenant.settings, tenant.model)
        job_id = uuid.UUID(job["id"])
        private = held_folder(prefix=tenant.settings.s3_prefix, tenant_id=tenant.id, job_id=job_id)
        assert len(bucket_keys(tenant.settings, private)) == 1
        gone = client.delete(f"/v1/admin/jobs/{job_id}/cells/0", headers=OPERATOR)
        assert gone.status_code == 204, gone.text
        assert bucket_keys(tenant.settings, private) == []
        assert tenant.images(job["id"]) == []
        assert tenant.job(job["id"])["held"] == 0


def test_a_tenant_that_requires_screening_never_gets_an_unscreened_image(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """A worker without a classifier cannot screen: the cell fails, nothing is stored."""
    with tenant_app(settings, sessions, max_attempts=1) as tenant:
        tenant.client.put(
            f"/v1/admin/tenants/{tenant.name}/policy",
            json={"screening_threshold": 0.5},
            headers=OPERATOR,
        )
        job = tenant.submit(seeds=[CLEAN_SEED])
        render_all(tenant.settings, tenant.model)
        view = tenant.job(job["id"])
        assert (view["status"], view["done"], view["failed"]) == ("failed", 0, 1)
        assert "screening did not run" in view["error"]
        folder = job_folder(
            prefix=tenant.settings.s3_prefix, tenant_id=tenant.id, job_id=uuid.UUID(job["id"])
        )
        assert not any(k.endswith(".png") for k in bucket_keys(tenant.settings, folder))
