"""LoRAs with real parts: tiny LoRAs built with peft, loaded by the worker's own code from
a diffusers folder, a kohya file and a Hub cache, switched on one warm pipeline; a
``lora_sets`` x seeds grid through the submit path and a real runner to the PNGs."""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from models.db.jobs import list_items
from models.db.keys import ensure_tenant
from models.domain.infotext import parse_infotext
from models.domain.loras import LoraUse
from models.domain.spec import JobSpec
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from models.infra.storage import make_storage
from models.service.submit import JobRequest, Submitter
from tests.a1111_infotext import parse_generation_parameters
from tests.tiny_loras import TinyLoras, build_tiny_loras, farm_loras, rewrite_metadata
from worker.lora_store import LoraLoadError
from worker.renderer import DiffusersRenderer, RenderBatch
from worker.runtime import build_runner, close_runner, load_renderer, lora_store


@pytest.fixture(scope="module")
def tiny_loras(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyLoras:
    return build_tiny_loras(model_cache / "tiny-sdxl", tmp_path_factory.mktemp("loras"))


@pytest.fixture
def lora_settings(settings: Settings, tiny_loras: TinyLoras, model_cache: Path) -> Settings:
    return settings.model_copy(
        update={
            "loras": Settings(loras=farm_loras(tiny_loras)).loras,
            "model_cache_dir": model_cache,
        }
    )


@pytest.fixture
def renderer(lora_settings: Settings) -> DiffusersRenderer:
    loaded = load_renderer("tiny-sdxl", lora_settings, "standard", lora_store(lora_settings))
    assert isinstance(loaded, DiffusersRenderer)
    return loaded


def use(settings: Settings, name: str, weight: float = 1.0) -> LoraUse:
    return LoraUse(name, weight, settings.lora_catalog[name].sha256)


def render(renderer: DiffusersRenderer, *loras: LoraUse, seed: int = 3) -> np.ndarray:
    batch = RenderBatch.of(
        prompts=["1girl, solo"],
        negative_prompts=["lowres"],
        seeds=[seed],
        width=64,
        height=64,
        steps=2,
        guidance_scale=7.0,
        sampler="euler_a",
        loras=tuple(loras),
    )
    return np.asarray(renderer.render(batch)[0], dtype=np.int16)


def test_a_lora_changes_the_image_and_switching_never_drifts(
    renderer: DiffusersRenderer, lora_settings: Settings
) -> None:
    style = use(lora_settings, "style")
    base = render(renderer)
    styled = render(renderer, style)
    assert np.abs(styled - base).max() > 8
    # Weight 0 is no LoRA; a kohya file of the same weights is the same LoRA.
    assert np.abs(render(renderer, use(lora_settings, "style", 0.0)) - base).max() <= 1
    assert np.array_equal(render(renderer, use(lora_settings, "style-kohya")), styled)
    # Text-encoder LoRAs too; and back and forth gives the same pixels each time.
    text = render(renderer, use(lora_settings, "text"))
    assert np.abs(text - base).max() > 8
    assert np.array_equal(render(renderer), base)
    assert np.array_equal(render(renderer, style), styled)
    both = render(renderer, style, use(lora_settings, "text"))
    assert np.abs(both - styled).max() > 8
    adapters = renderer.adapters
    assert adapters is not None
    assert adapters.loads == 3  # style, style-kohya, text: each loaded once, never reloaded


def test_a_lora_that_cannot_load_fails_cleanly(
    renderer: DiffusersRenderer, lora_settings: Settings, tiny_loras: TinyLoras
) -> None:
    base = render(renderer)
    with pytest.raises(LoraLoadError, match="does not load on this model"):
        render(renderer, use(lora_settings, "broken"))
    assert np.array_equal(render(renderer), base)  # the pipeline is as it was
    changed = LoraUse("style", 1.0, "0" * 64)  # the job was made with another file
    with pytest.raises(LoraLoadError, match="the file changed"):
        render(renderer, changed)


def test_the_hash_is_a1111s_and_ignores_metadata(lora_settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "copy.safetensors"
    shutil.copy(Path(lora_settings.loras["style-kohya"].source), path)
    before = Settings(loras={"c": str(path)}, model_cache_dir=tmp_path).lora_catalog["c"]
    rewrite_metadata(path, {"ss_base_model_version": "sdxl_base_v1-0"})
    after = Settings(loras={"c": str(path)}, model_cache_dir=tmp_path).lora_catalog["c"]
    assert (before.sha256, before.base_model, after.base_model) == (
        after.sha256,
        "tiny-sdxl",
        "sdxl",
    )


def test_a_hub_lora_loads_from_the_hub_cache(
    renderer: DiffusersRenderer, lora_settings: Settings, tiny_loras: TinyLoras, tmp_path: Path
) -> None:
    """The Hub path (hf_hub_download) with the files already in its cache, offline."""
    repo = tmp_path / "hub" / "models--farm--tiny-style"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_loras.style / "pytorch_lora_weights.safetensors", snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    hub = Settings(loras={"hubstyle": "farm/tiny-style"}, model_cache_dir=tmp_path / "hub")
    info = hub.lora_catalog["hubstyle"]
    assert info.sha256 == lora_settings.lora_catalog["style"].sha256


def test_a_lora_sets_grid_renders_on_a_worker_with_a1111s_infotext(
    lora_settings: Settings, sessions: sessionmaker[Session]
) -> None:
    model = f"loras-{uuid.uuid4().hex[:6]}"  # a model no other test's worker serves
    local = lora_settings.model_copy(
        update={"models": {**lora_settings.models, model: "tiny-sdxl"}}
    )
    spec = JobSpec.model_validate(
        {
            "prompts": ["1girl, <lora:text:0.5>"],
            "buckets": ["1024x1024"],
            "seeds": [1, 2],
            "steps": 2,
            "model": model,
            "lora_sets": [[{"name": "style", "weight": 0.8}], [{"name": "other"}], []],
        }
    )
    with sessions() as session:
        tenant = ensure_tenant(session, name=f"loras-{uuid.uuid4().hex[:6]}").id
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
    assert [i.status for i in items] == ["done"] * 6
    names = [[u["name"] for u in i.loras or []] for i in items]
    assert names == [["style", "text"], ["other", "text"], ["text"]] * 2
    storage = make_storage(local)
    texts = [Image.open(io.BytesIO(storage.get(i.key or ""))).info["parameters"] for i in items]
    first = parse_generation_parameters(texts[0])
    assert first["Prompt"].endswith(", 1girl, <lora:text:0.5> <lora:style:0.8>")
    style_hash = local.lora_catalog["style"].sha256[:12]
    assert f"style: {style_hash}" in first["Lora hashes"]
    assert [u.name for u in parse_infotext(texts[0]).loras] == ["style", "text"]
