"""Items and shards have no foreign key (migration 0008): deleting jobs, directly or with their
tenant, still deletes their cells and shards on Postgres."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Item, Job, Shard, Tenant
from tests.unit.test_shard_store import make_job, new_model


def _counts(session: Session, job_ids: list[object]) -> tuple[int, int]:
    items = session.scalar(select(func.count()).select_from(Item).where(Item.job_id.in_(job_ids)))
    shards = session.scalar(
        select(func.count()).select_from(Shard).where(Shard.job_id.in_(job_ids))
    )
    return int(items or 0), int(shards or 0)


def test_deleting_a_job_deletes_its_cells(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    gone, _ = make_job(sessions, model, cells=3)
    kept, _ = make_job(sessions, model, cells=3)
    with sessions.begin() as session:
        assert _counts(session, [gone]) == (3, 3)
        session.execute(delete(Job).where(Job.id == gone))
    with sessions() as session:
        assert _counts(session, [gone]) == (0, 0)
        assert _counts(session, [kept]) == (3, 3)


def test_deleting_a_tenant_deletes_its_jobs_cells(sessions: sessionmaker[Session]) -> None:
    model = new_model()
    tenant = f"doomed-{model}"
    jobs = [make_job(sessions, model, tenant=tenant, cells=2)[0] for _ in range(2)]
    with sessions.begin() as session:
        assert _counts(session, list(jobs)) == (4, 2)
        session.execute(delete(Tenant).where(Tenant.name == tenant))
    with sessions() as session:
        assert _counts(session, list(jobs)) == (0, 0)
