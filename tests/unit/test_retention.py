"""Retention: a job's files expire (the sweep deletes them and says so on the job), URLs
never outlive them, and deleting a job or a tenant removes its objects, on S3 and on
SQLite with a local folder."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from migrations.apply import upgrade
from models.db.business_tables import StorageDeletion
from models.db.policies import save_policy
from models.db.session import make_engine, make_session_factory
from models.db.tables import Item, Job, Tenant, utcnow
from models.domain.policy import ContentPolicy
from models.infra.settings import Settings
from models.infra.storage import job_folder, make_storage
from models.service.retention import RetentionSweep
from tests.business import OPERATOR, bucket_keys, job_row, render_all, tenant_app
from tests.s3_servers import S3Server


@pytest.fixture(scope="session")
def s3(strict_s3: S3Server) -> S3Server:
    """Deletion and retention are S3-facing: run them on the signature-checking server."""
    return strict_s3


def test_an_expired_job_loses_its_objects_and_says_so(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with tenant_app(settings, sessions, storage_delete_grace_s=30.0) as tenant:
        settings = tenant.settings
        brief = tenant.submit(seeds=[1, 2], retention_s=60)  # the sweep is told the time
        kept = tenant.submit(seeds=[3])
        render_all(settings, tenant.model)
        folders = {
            name: job_folder(
                prefix=settings.s3_prefix, tenant_id=tenant.id, job_id=uuid.UUID(job["id"])
            )
            for name, job in (("brief", brief), ("kept", kept))
        }
        stored = {name: bucket_keys(settings, folder + "/") for name, folder in folders.items()}
        # Two images, their thumbnails, a sheet, the manifest and the gallery.
        assert len(stored["brief"]) == 7 and len(stored["kept"]) == 5

        view = tenant.job(brief["id"])
        assert view["retention_s"] == 60 and view["expires_at"] and view["expired_at"] is None
        assert tenant.job(kept["id"])["expires_at"] is None  # no retention: kept forever
        # A presigned URL never outlives the file: at most the seconds left (not an hour).
        [first, _] = tenant.images(brief["id"])
        expiry_s = int(parse_qs(urlparse(first["url"]).query)["X-Amz-Expires"][0])
        assert 0 < expiry_s <= 60 < settings.url_expiry_s

        expires_at = job_row(sessions, brief["id"]).expires_at
        assert expires_at is not None
        sweeper = RetentionSweep(settings, sessions, make_storage(settings))
        assert sweeper.sweep(now=expires_at - timedelta(seconds=1)).expired_jobs == 0
        swept = sweeper.sweep(now=expires_at + timedelta(seconds=1))
        assert swept.expired_jobs >= 1 and swept.deleted_objects >= 7

        assert bucket_keys(settings, folders["brief"] + "/") == []
        assert bucket_keys(settings, folders["kept"] + "/") == stored["kept"]  # untouched
        view = tenant.job(brief["id"])
        assert view["expired_at"] and view["removed_objects"] == 7
        assert view["done"] == 2 and view["status"] == "succeeded"
        cells = tenant.images(brief["id"])
        assert [c["status"] for c in cells] == ["expired", "expired"]
        assert [c["url"] for c in cells] == [None, None]
        assert all(c["key"] for c in cells)  # what was removed
        retry = tenant.client.post(f"/v1/jobs/{brief['id']}/retry", headers=tenant.auth)
        assert retry.status_code == 409 and retry.json()["detail"][0]["field"] == "expired_at"

        # The second pass, after the grace period, empties the folders again and forgets them.
        later = utcnow() + timedelta(seconds=31)
        sweeper.sweep(now=later)
        with sessions() as session:
            prefixes = session.scalars(select(StorageDeletion.prefix)).all()
        assert not any(folders["brief"] in p for p in prefixes)


def test_retention_stays_within_the_tenant_maximum(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with tenant_app(settings, sessions) as tenant:
        with sessions.begin() as session:
            policy = ContentPolicy(retention_s=600, max_retention_s=3600)
            save_policy(session, tenant_id=tenant.id, policy=policy)
        body = {"prompts": ["1girl"], "model": tenant.model, "retention_s": 7200}
        refused = tenant.client.post("/v1/jobs", json=body, headers=tenant.auth)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["field"] == "retention_s"
        assert "3600 s" in refused.json()["detail"][0]["reason"]
        dry = tenant.client.post(
            "/v1/jobs?dry_run=true",
            json={**body, "retention_s": 120},
            headers=tenant.auth,
        ).json()
        assert dry["retention_s"] == 120 and dry["expires_at_if_finished_now"]
        default = tenant.submit()
        assert tenant.job(default["id"])["retention_s"] == 600  # the tenant's default


def test_deleting_jobs_and_tenants_removes_their_objects_on_sqlite(tmp_path: Path) -> None:
    """Embedded mode: SQLite (no trigger deletes cells) and a local folder."""
    settings = Settings(data_dir=tmp_path, model="simulated", models={"simulated": "simulated:0"})
    upgrade(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_session_factory(engine)
    try:
        with tenant_app(settings, sessions) as tenant:
            settings = tenant.settings
            gone, kept = tenant.submit(seeds=[1, 2]), tenant.submit(seeds=[3])
            render_all(settings, tenant.model)
            root = settings.local_storage_dir
            folder = root / settings.s3_prefix / str(tenant.id)
            assert (folder / gone["id"] / "manifest.json").is_file()

            delete = tenant.client.delete(f"/v1/jobs/{gone['id']}", headers=tenant.auth)
            assert delete.status_code == 204, delete.text
            with sessions() as session:
                cells = session.scalar(
                    select(func.count())
                    .select_from(Item)
                    .where(Item.job_id == uuid.UUID(gone["id"]))
                )
            assert cells == 0
            RetentionSweep(settings, sessions, make_storage(settings)).sweep()
            assert not (folder / gone["id"]).exists()
            assert (folder / kept["id"] / "manifest.json").is_file()

            busy = tenant.submit(seeds=[4])
            refused = tenant.client.delete(f"/v1/jobs/{busy['id']}", headers=tenant.auth)
            assert refused.status_code == 409  # cancel it first

            removed = tenant.client.delete(f"/v1/admin/tenants/{tenant.name}", headers=OPERATOR)
            assert removed.status_code == 204, removed.text
            RetentionSweep(settings, sessions, make_storage(settings)).sweep()
            assert not folder.exists()
            with sessions() as session:
                assert session.get(Tenant, tenant.id) is None
                assert session.scalar(select(func.count()).select_from(Job)) == 0
                assert session.scalar(select(func.count()).select_from(Item)) == 0
    finally:
        engine.dispose()
