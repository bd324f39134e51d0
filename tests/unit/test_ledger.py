"""The GPU-second ledger: every recorded cell's share and device, the usage report, a
job that stops at its GPU budget, and a tenant's monthly budget at submission."""

from __future__ import annotations

import uuid
from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.business_tables import GpuUsage
from models.db.ledger import record_usage
from models.db.policies import save_policy
from models.db.tables import Item, utcnow
from models.domain.policy import ContentPolicy
from models.domain.usage import month_start, next_month_start, shares_ms
from models.infra.settings import Settings
from tests.business import render_all, tenant_app
from worker.tenant_cache import hashed_label


def test_shares_add_up_to_the_call() -> None:
    assert shares_ms(1001, 4) == [251, 250, 250, 250]
    assert sum(shares_ms(7, 3)) == 7 and shares_ms(5, 0) == []
    now = utcnow()
    assert month_start(now) <= now < next_month_start(now)
    assert next_month_start(now) - month_start(now) >= timedelta(days=28)


def _gpu_seconds(tenant_label: str, model: str) -> float:
    value = REGISTRY.get_sample_value(
        "farm_gpu_seconds_total", {"tenant": tenant_label, "model": model, "device": "simulated"}
    )
    return value or 0.0


def test_usage_adds_up_every_cell(settings: Settings, sessions: sessionmaker[Session]) -> None:
    with tenant_app(settings, sessions, seconds_per_image=0.02, batch_size=2) as tenant:
        first = tenant.submit(prompts=["1girl", "1boy"], seeds=[1, 2])
        second = tenant.submit(seeds=[3])
        render_all(tenant.settings, tenant.model)
        with sessions() as session:
            cells = session.scalars(
                select(Item).where(
                    Item.job_id.in_([uuid.UUID(first["id"]), uuid.UUID(second["id"])])
                )
            ).all()
            rows = session.scalars(select(GpuUsage).where(GpuUsage.tenant_id == tenant.id)).all()
        assert len(cells) == 5 and all(c.render_ms and c.device == "simulated" for c in cells)
        assert len(rows) == 3  # one per shard: two of two cells, one of one
        cell_ms = sum(c.render_ms or 0 for c in cells)
        assert sum(r.gpu_ms for r in rows) == cell_ms
        assert cell_ms >= 5 * 20  # each image took its simulated 20 ms at least

        by_job = tenant.client.get("/v1/usage?group_by=job", headers=tenant.auth).json()
        assert by_job["total"]["cells"] == 5
        assert by_job["total"]["gpu_seconds"] == round(cell_ms / 1000, 3)
        per_job = {item["key"]: item for item in by_job["items"]}
        assert per_job[first["id"]]["cells"] == 4 and per_job[first["id"]]["shards"] == 2
        assert per_job[first["id"]]["model"] == tenant.model
        assert tenant.job(first["id"])["gpu_seconds"] == per_job[first["id"]]["gpu_seconds"]
        by_model = tenant.client.get("/v1/usage?group_by=model", headers=tenant.auth).json()
        assert [(i["key"], i["devices"]) for i in by_model["items"]] == [
            (tenant.model, ["simulated"])
        ]
        by_day = tenant.client.get("/v1/usage", headers=tenant.auth).json()
        assert [i["key"] for i in by_day["items"]] == [utcnow().strftime("%Y-%m-%d")]
        assert by_day["budget"] == {
            "monthly_gpu_seconds": None,
            "used_this_month": round(cell_ms / 1000, 3),
            "remaining": None,
        }
        # The Prometheus counter: per tenant, by a hash of its id unless it opts in.
        counted = _gpu_seconds(hashed_label(tenant.id), tenant.model)
        assert abs(counted - cell_ms / 1000) < 1e-6
        named = {"tenant": tenant.name, "model": tenant.model, "device": "simulated"}
        assert REGISTRY.get_sample_value("farm_gpu_seconds_total", named) is None

        future = tenant.client.get(
            "/v1/usage?from=2099-01-01&to=2099-02-01", headers=tenant.auth
        ).json()
        assert future["items"] == [] and future["total"]["gpu_seconds"] == 0
        backwards = tenant.client.get(
            "/v1/usage?from=2026-02-01&to=2026-01-01", headers=tenant.auth
        )
        assert backwards.status_code == 422 and backwards.json()["detail"][0]["field"] == "to"
        bad = tenant.client.get("/v1/usage?group_by=week", headers=tenant.auth)
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "group_by"


def test_a_tenant_that_opts_in_is_counted_by_name(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with tenant_app(settings, sessions) as tenant:
        with sessions.begin() as session:
            save_policy(session, tenant_id=tenant.id, policy=ContentPolicy(metrics_by_name=True))
        tenant.submit()
        render_all(tenant.settings, tenant.model)
        assert (
            REGISTRY.get_sample_value(
                "farm_gpu_seconds_total",
                {"tenant": tenant.name, "model": tenant.model, "device": "simulated"},
            )
            is not None
        )


def test_a_job_stops_at_its_gpu_budget(settings: Settings, sessions: sessionmaker[Session]) -> None:
    with tenant_app(settings, sessions, seconds_per_image=0.05, batch_size=1) as tenant:
        job = tenant.submit(seeds=list(range(8)), max_gpu_seconds=0.12)
        # Each shard is recorded before the next is claimed: a worker's writer otherwise
        # records a shard while the next renders, and shards in flight finish (as on pause).
        render_all(tenant.settings, tenant.model, one_by_one=True)
        view = tenant.job(job["id"])
        assert view["status"] == "partial", view
        assert view["max_gpu_seconds"] == 0.12
        # Shards of 50 ms or more: the one that reaches 0.12 s is the last to start.
        with sessions() as session:
            spent = session.scalars(
                select(GpuUsage.gpu_ms)
                .where(GpuUsage.job_id == uuid.UUID(job["id"]))
                .order_by(GpuUsage.id)
            ).all()
        assert len(spent) == view["done"] and sum(spent[:-1]) < 120 <= sum(spent)
        assert view["done"] in (2, 3) and view["done"] + view["failed"] == 8
        assert view["gpu_seconds"] == sum(spent) / 1000
        assert "GPU budget of 0.12 s is spent" in view["error"]
        failed = [c for c in tenant.images(job["id"]) if c["status"] == "failed"]
        assert len(failed) == 8 - view["done"] and all("GPU budget" in c["error"] for c in failed)


def test_the_monthly_budget_is_enforced_like_the_cell_quotas(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with tenant_app(settings, sessions) as tenant:
        with sessions.begin() as session:
            save_policy(
                session, tenant_id=tenant.id, policy=ContentPolicy(monthly_gpu_seconds=10.0)
            )
            record_usage(
                session,
                tenant_id=tenant.id,
                job_id=uuid.uuid4(),
                shard_index=0,
                model=tenant.model,
                device="cuda:0 NVIDIA H100 80GB HBM3",
                cells=4,
                gpu_ms=9_000,
                now=utcnow(),
            )
        tenant.submit()  # 9 s used of 10: still under
        with sessions.begin() as session:
            record_usage(
                session,
                tenant_id=tenant.id,
                job_id=uuid.uuid4(),
                shard_index=0,
                model=tenant.model,
                device="cuda:0 NVIDIA H100 80GB HBM3",
                cells=4,
                gpu_ms=1_500,
                now=utcnow(),
            )
        body = {"prompts": ["1girl"], "model": tenant.model}
        for path in ("/v1/jobs", "/v1/jobs?dry_run=true"):
            refused = tenant.client.post(path, json=body, headers=tenant.auth)
            assert refused.status_code == 429, refused.text
            assert refused.json()["detail"][0]["field"] == "monthly_gpu_seconds"
            assert "10.5 GPU seconds this month" in refused.json()["message"]
            left_s = (next_month_start(utcnow()) - utcnow()).total_seconds()
            assert abs(int(refused.headers["retry-after"]) - left_s) < 60
        budget = tenant.client.get("/v1/usage", headers=tenant.auth).json()["budget"]
        assert budget == {"monthly_gpu_seconds": 10.0, "used_this_month": 10.5, "remaining": 0.0}
