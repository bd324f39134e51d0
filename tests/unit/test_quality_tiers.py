"""Quality tiers per job: asked for in the spec, refused when no worker serves them,
rendered by a renderer of that tier, recorded per cell and in the infotext."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from models.db.jobs import list_items
from models.db.keys import ensure_tenant
from models.domain.infotext import parse_infotext
from models.domain.spec import JobSpec
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from models.infra.storage import make_storage
from models.service.submit import JobRequest, Submitter
from tests.conftest import ApiClient
from worker.runtime import RendererCache, build_runner, close_runner, tier_options_for

SPEC: dict[str, Any] = {"prompts": ["1girl"], "seeds": [1], "model": "simulated"}
TIERS = ["exact", "standard"]


@pytest.mark.parametrize(
    ("tier", "field"), [("fast", "quality_tier"), (["exact", "fast"], "quality_tier.1")]
)
def test_a_tier_no_worker_serves_is_refused(api: ApiClient, tier: Any, field: str) -> None:
    response = api.client.post("/v1/jobs", json={**SPEC, "quality_tier": tier}, headers=api.auth)
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["field"] == field
    assert "serve: exact, standard" in detail["reason"]


def test_a_list_of_tiers_is_an_axis(api: ApiClient) -> None:
    body = {**SPEC, "quality_tier": ["exact", "standard"]}
    dry = api.client.post("/v1/jobs?dry_run=true", json=body, headers=api.auth).json()
    assert dry["axes"]["quality_tier"] == 2 and dry["total"] == 2
    plain = api.client.post("/v1/jobs?dry_run=true", json=SPEC, headers=api.auth).json()
    # exact runs float32 without TF32 on a GPU: about 12x the GPU time of standard.
    assert dry["estimated_gpu_seconds"] == pytest.approx(
        12.8 * plain["estimated_gpu_seconds"], 0.02
    )


def test_the_served_tiers_are_checked_at_start() -> None:
    with pytest.raises(ValueError, match="FARM_QUALITY_TIERS must list some of"):
        Settings(quality_tiers="exact,warp")
    assert Settings(quality_tiers=" standard , fast").served_tiers == ("standard", "fast")


def test_a_cpu_renders_every_tier_it_serves_in_float32_and_refuses_fast() -> None:
    settings = Settings()
    exact, standard = (tier_options_for(settings, "cpu", t) for t in ("exact", "standard"))
    assert exact == standard and exact.dtype == "fp32" and not exact.compile_mode
    with pytest.raises(ValueError, match="'fast' cannot be served here: FP8 needs"):
        tier_options_for(settings, "cpu", "fast")


def test_a_worker_that_cannot_serve_a_listed_tier_refuses_to_start(settings: Settings) -> None:
    promising = settings.model_copy(update={"quality_tiers": "standard,fast"})
    with pytest.raises(RuntimeError, match="lists 'fast', which this worker cannot serve"):
        build_runner(promising, warm_models=["tiny-sdxl"])
    # A simulation has no numerics to choose: it serves any tier.
    close_runner(build_runner(promising, warm_models=["simulated"]))


def test_each_tier_renders_with_a_renderer_of_its_own(settings: Settings) -> None:
    cache = RendererCache(settings)
    standard, exact = cache("tiny-sdxl", "standard"), cache("tiny-sdxl", "exact")
    assert standard is not exact
    assert cache("tiny-sdxl", "exact") is exact  # loaded once


def test_cells_record_their_tier_end_to_end(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    """A tier axis through the submit path and a real runner: every cell and every
    PNG's infotext says its tier."""
    model = f"tiers-{uuid.uuid4().hex[:6]}"  # a model no other test's worker serves
    local = settings.model_copy(update={"models": {**settings.models, model: "tiny-sdxl"}})
    spec = JobSpec.model_validate({**SPEC, "model": model, "steps": 2, "quality_tier": TIERS})
    with sessions() as session:
        tenant = ensure_tenant(session, name=f"tiers-{uuid.uuid4().hex[:6]}").id
        session.commit()
        [created] = Submitter(local, LocalPublisher()).submit(
            session, tenant_id=tenant, requests=[JobRequest(spec)]
        )
    runner = build_runner(local, warm_models=[])
    try:
        while runner.run_next(model).value != "nothing":
            pass
        runner.drain()
    finally:
        close_runner(runner)
    with sessions() as session:
        items = list_items(session, job_id=created.job.id, cursor=None, limit=10).items
    assert [(i.quality_tier, i.status) for i in items] == [("exact", "done"), ("standard", "done")]
    storage = make_storage(local)
    infotexts = [
        parse_infotext(Image.open(io.BytesIO(storage.get(i.key or ""))).info["parameters"])
        for i in items
    ]
    assert [p.quality_tier for p in infotexts] == TIERS
