"""Stage 5: the whole farm on the GPU, embedded (SQLite, in-process queue and worker,
local storage), rendering a grid end to end through the real API: submit -> worker ->
PNG -> storage -> recorded, polled by the real client.

It loads the folder the model stage saved, named in FARM_MODELS, through the same
loading code as any diffusers folder. images/s is the client's view (submit until the
job is done); the GPU busy share is the renderer's seconds over the worker's wall time
from its first render until the last image is recorded.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.gpu_kit.common import NEGATIVE, PROMPT, Budget, free, pixels
from bench.gpu_kit.stages import KitConfig, KitState, vs_reference
from farm.client import FarmClient
from farm.stack import build_app, free_port, migrate, serve_in_thread
from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.domain.buckets import parse_bucket
from models.infra.settings import Settings
from worker.renderer import RenderBatch, Renderer, StopCheck

MODEL = "kit"


class BusyClock:
    """Wraps the worker's renderers: seconds spent rendering, first start, last end."""

    def __init__(self) -> None:
        self.render_s = 0.0
        self.first_start: float | None = None
        self.lock = threading.Lock()

    def wrap(self, inner: Renderer) -> Renderer:
        clock = self

        class Timed:
            model_name = inner.model_name

            def render(self, batch: RenderBatch, should_stop: StopCheck | None = None) -> Any:
                started = time.monotonic()
                with clock.lock:
                    clock.first_start = clock.first_start or started
                try:
                    return inner.render(batch, should_stop)
                finally:
                    with clock.lock:
                        clock.render_s += time.monotonic() - started

        return Timed()


def farm_bucket(cfg: KitConfig) -> str:
    """The kit's size where it is a bucket of the table; else 1024x1024."""
    try:
        return parse_bucket(f"{cfg.size}x{cfg.size}").name
    except ValueError:
        return "1024x1024"


def farm_compile_mode(cfg: KitConfig, state: KitState) -> tuple[str, str]:
    """Compile as stage 3 did when its graph is the farm's (same size and batch): the
    warm-up then loads it from the cache. Otherwise eager: a cold compile of another
    shape would not fit the budget."""
    compiled = state.results.get("3_compile_default", {})
    if not compiled.get("configs"):
        return "off", "stage 3 did not compile, so the farm runs eager"
    if farm_bucket(cfg) != f"{cfg.size}x{cfg.size}":
        return "off", f"stage 3 compiled {cfg.size}², not the farm's bucket, so eager"
    return "default", "the graph of stage 3, from the compile cache"


def stage_farm(cfg: KitConfig, budget: Budget, state: KitState) -> dict[str, Any]:
    bucket = farm_bucket(cfg)
    mode, why = farm_compile_mode(cfg, state)
    data = cfg.work / "farm"
    settings = Settings(
        data_dir=data,
        database_url="",
        broker_url="",
        s3_bucket="",
        model=MODEL,
        models={MODEL: str(cfg.model_dir)},
        device=cfg.device,
        model_cache_dir=cfg.work / "models",
        batch_size=cfg.batch,
        gpu_dtype="bf16",  # the standard tier's switches, as FARM_GPU_* settings
        gpu_sdpa="on",
        gpu_channels_last="on",
        gpu_fuse_qkv="on",
        gpu_compile=mode,
        gpu_warm_buckets=bucket,
        metrics_port=0,
    )
    migrate(settings)
    with make_session_factory(make_engine(settings.sqlalchemy_url)).begin() as session:
        key = create_api_key(session, tenant_name="kit")
    port = free_port()
    settings = settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    started = time.perf_counter()
    app, runtime = build_app(settings)  # loads the model and warms (compiles) the bucket
    assert runtime is not None  # no broker: embedded
    start_s = time.perf_counter() - started
    clock = BusyClock()
    runner = runtime.worker.runner
    inner_for = runner.renderer_for
    runner.renderer_for = lambda name, tier="standard": clock.wrap(inner_for(name, tier))
    runtime.start()
    spec = {
        "prompts": [PROMPT],
        "negative_prompt": NEGATIVE,
        "quality_tags": False,
        "buckets": [bucket],
        "seeds": {"start": 0, "count": cfg.farm_images},
        "steps": cfg.steps,
        "guidance_scale": 7,
        "sampler": "euler_a",
        "model": MODEL,
    }
    try:
        with serve_in_thread(app, host="127.0.0.1", port=port) as url, FarmClient(url, key) as c:
            submitted = time.monotonic()
            job = c.submit(spec)
            final = c.wait(job["id"], poll_s=0.05, timeout_s=max(budget.left(), 1.0))
            done = time.monotonic()
            first = next(i for i in c.images(job["id"]) if i["seed"] == 0)
    finally:
        runtime.stop()
    free(cfg.device)
    from PIL import Image

    with Image.open(settings.local_storage_dir / first["key"]) as png:
        seed0 = pixels([png])[0]
    wall = done - submitted
    busy_wall = done - (clock.first_start or submitted)
    result: dict[str, Any] = {
        "bucket": bucket,
        "batch": cfg.batch,
        "images": final["done"],
        "status": final["status"],
        "compile": mode,
        "compile_why": why,
        "start_s": round(start_s, 1),
        "end_to_end_s": round(wall, 2),
        "images_per_s": round(final["done"] / wall, 3),
        "render_s": round(clock.render_s, 2),
        "renderer_images_per_s": round(final["done"] / clock.render_s, 3),
        "gpu_busy_share": round(clock.render_s / busy_wall, 4),
        "psnr_vs_fp32": vs_reference(state, seed0),
    }
    alone = _renderer_alone(state, mode)
    if alone and bucket == f"{cfg.size}x{cfg.size}":  # the same images, alone and in the farm
        result["renderer_alone_images_per_s"] = alone
        result["vs_renderer_alone"] = round(result["images_per_s"] / alone, 3)
    return result


def _renderer_alone(state: KitState, mode: str) -> float | None:
    """images/s of the same renderer in its own stage, at the farm's batch size."""
    stage = "3_compile_default" if mode == "default" else "2_eager"
    configs = state.results.get(stage, {}).get("configs") or []
    return float(configs[-1]["images_per_s"]) if configs else None
