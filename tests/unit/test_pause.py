"""Pause, resume and priority: paused shards are not ``queued``, so no claim takes them;
a shard in flight finishes; whatever comes back while paused waits; resume publishes."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models.db.business_tables import GpuUsage
from models.db.claims import ClaimedShard, claim_next_shard
from models.db.finish import CellFailure
from models.db.reconcile import release_expired_leases
from models.db.record_attempt import record_attempt
from models.db.tables import Item, Shard, utcnow
from models.db.webhook_tables import WebhookDelivery
from models.infra.settings import Settings
from tests.business import render_all, tenant_app


def _cells(sessions: sessionmaker[Session], shard: ClaimedShard) -> list[Item]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Item).where(Item.job_id == shard.job_id, Item.shard_index == shard.index)
            )
        )


def _statuses(sessions: sessionmaker[Session], job_id: str) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Shard.status).where(Shard.job_id == uuid.UUID(job_id)).order_by(Shard.index)
            )
        )


def test_pause_and_resume(settings: Settings, sessions: sessionmaker[Session]) -> None:
    with tenant_app(settings, sessions, batch_size=1) as tenant:
        client, auth = tenant.client, tenant.auth
        job = tenant.submit(seeds=[1, 2, 3], webhook_url="https://hooks.example.com/farm")
        published = len(tenant.publisher.queue.queue)
        paused = client.post(f"/v1/jobs/{job['id']}/pause", headers=auth)
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True and paused.json()["status"] == "queued"
        assert client.post(f"/v1/jobs/{job['id']}/pause", headers=auth).status_code == 200
        assert _statuses(sessions, job["id"]) == ["paused"] * 3
        with sessions.begin() as session:  # no claim takes a paused shard
            assert claim_next_shard(session, model=tenant.model, worker="w", lease_s=60) is None
        assert render_all(tenant.settings, tenant.model) == 0
        assert tenant.job(job["id"])["done"] == 0

        resumed = client.post(f"/v1/jobs/{job['id']}/resume", headers=auth)
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        assert _statuses(sessions, job["id"]) == ["queued"] * 3
        assert len(tenant.publisher.queue.queue) == published + 3  # its tokens, again
        render_all(tenant.settings, tenant.model)
        view = tenant.job(job["id"])
        assert (view["status"], view["done"]) == ("succeeded", 3)
        with sessions() as session:
            events = session.scalars(
                select(WebhookDelivery.event)
                .where(WebhookDelivery.job_id == uuid.UUID(job["id"]))
                .order_by(WebhookDelivery.id)
            ).all()
        assert events == ["job.paused", "job.resumed", "job.completed"]
        finished = client.post(f"/v1/jobs/{job['id']}/pause", headers=auth)
        assert finished.status_code == 409
        assert finished.json()["detail"][0]["field"] == "status"


def test_what_comes_back_while_paused_waits(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """A shard in flight finishes; one with a cell to retry, or one whose worker's lease
    ran out, goes back to ``paused``, not to the queue."""
    with tenant_app(settings, sessions, batch_size=1) as tenant:
        job = tenant.submit(seeds=[1, 2, 3])
        with sessions.begin() as session:
            first = claim_next_shard(session, model=tenant.model, worker="w1", lease_s=60)
            second = claim_next_shard(session, model=tenant.model, worker="w2", lease_s=60)
        assert first is not None and second is not None
        tenant.client.post(f"/v1/jobs/{job['id']}/pause", headers=tenant.auth)
        assert sorted(_statuses(sessions, job["id"])) == ["paused", "running", "running"]

        # w1's render failed: its cell will be retried (recorded as the worker does).
        [index] = [c.index for c in _cells(sessions, first)]
        record_attempt(
            sessions,
            analyses=[],
            device="cpu",
            progress_min_interval_s=1.0,
            shard=first,
            worker="w1",
            results=[],
            failures=[CellFailure(index, "boom")],
            max_attempts=3,
            backoff_s=0.0,
        )
        with sessions.begin() as session:
            # w2 died: its lease ran out.
            session.execute(update(Shard).where(Shard.id == second.id).values(lease_until=utcnow()))
        with sessions.begin() as session:
            release_expired_leases(session, now=utcnow() + timedelta(seconds=1))
            assert (
                session.scalars(select(GpuUsage).where(GpuUsage.job_id == first.job_id)).all() == []
            )
        assert _statuses(sessions, job["id"]) == ["paused"] * 3
        with sessions.begin() as session:
            assert claim_next_shard(session, model=tenant.model, worker="w3", lease_s=60) is None
        tenant.client.post(f"/v1/jobs/{job['id']}/resume", headers=tenant.auth)
        render_all(tenant.settings, tenant.model)
        assert tenant.job(job["id"])["status"] == "succeeded"


def test_a_paused_job_can_be_cancelled_and_its_retries_wait(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with tenant_app(settings, sessions, batch_size=1) as tenant:
        job = tenant.submit(seeds=[1, 2])
        tenant.client.post(f"/v1/jobs/{job['id']}/pause", headers=tenant.auth)
        cancelled = tenant.client.post(f"/v1/jobs/{job['id']}/cancel", headers=tenant.auth)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["paused"] is False  # finished: nothing left to pause
        assert _statuses(sessions, job["id"]) == ["cancelled"] * 2
        assert (
            tenant.client.post(f"/v1/jobs/{job['id']}/resume", headers=tenant.auth).status_code
            == 409
        )


def test_a_new_priority_moves_the_waiting_shards(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with tenant_app(settings, sessions, batch_size=1) as tenant:
        client, auth = tenant.client, tenant.auth
        bulk = tenant.submit(seeds=[1, 2], priority="bulk")
        urgent = tenant.submit(seeds=[3], priority="bulk")
        boosted = client.patch(f"/v1/jobs/{urgent['id']}", json={"priority": "high"}, headers=auth)
        assert boosted.status_code == 200 and boosted.json()["priority"] == "high"
        with sessions.begin() as session:
            first = claim_next_shard(session, model=tenant.model, worker="w", lease_s=60)
        assert first is not None and str(first.job_id) == urgent["id"]  # it runs first now
        for bad, field in [({"priority": "asap"}, "priority"), ({"name": "x"}, "name")]:
            refused = client.patch(f"/v1/jobs/{bulk['id']}", json=bad, headers=auth)
            assert refused.status_code == 422
            assert field in [d["field"] for d in refused.json()["detail"]]
        other = client.patch(f"/v1/jobs/{uuid.uuid4()}", json={"priority": "high"}, headers=auth)
        assert other.status_code == 404


def test_the_job_page_pauses_and_resumes(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with tenant_app(settings, sessions) as tenant:
        job = tenant.submit()
        page = tenant.client.get(f"/web/jobs/{job['id']}", headers=tenant.auth)
        assert 'id="pause-form"' in page.text
        paused = tenant.client.post(
            f"/web/jobs/{job['id']}/pause", headers=tenant.auth, follow_redirects=False
        )
        assert paused.status_code == 303 and tenant.job(job["id"])["paused"] is True
        tenant.client.post(f"/web/jobs/{job['id']}/resume", headers=tenant.auth)
        assert tenant.job(job["id"])["paused"] is False
