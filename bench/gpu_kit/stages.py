"""The kit's rendering stages: the random-weight model and its fp32 reference, plain
diffusers fp16 (the baseline), and our renderer eager, compiled and in FP8.

Every stage renders the same seeds through the same saved weights, so each records
PSNR against the fp32 reference (the ``exact`` tier, seed 0, batch 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.gpu_kit.common import (
    NEGATIVE,
    PROMPT,
    Budget,
    free,
    pixels,
    psnr,
    stock_backend_flags,
    sync,
    time_calls,
)
from models.domain.model_sources import ModelSource
from worker.gpu_apply import apply_gpu_options
from worker.gpu_options import GpuOptions, Tier, tier_options, tiers_available
from worker.model_loading import load_pipeline
from worker.renderer import DiffusersRenderer, RenderBatch


@dataclass(frozen=True)
class KitConfig:
    device: str
    tiny: bool  # the tiny test model (CPU rehearsal); else full-size SDXL, random weights
    size: int
    steps: int
    batches: tuple[int, ...]  # baseline and eager; the last is the farm's batch size
    iters: int
    work: Path  # scratch: the saved model, the compile cache, the farm's data
    farm_images: int

    @property
    def batch(self) -> int:
        """Compiled stages and the farm: one batch size (each size compiles anew)."""
        return self.batches[-1]

    @property
    def model_dir(self) -> Path:
        return self.work / "model"


@dataclass
class KitState:
    """What later stages need from earlier ones."""

    reference: np.ndarray | None = None  # seed 0, exact tier
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def render_batch(cfg: KitConfig, size: int) -> RenderBatch:
    return RenderBatch.of(
        prompts=[PROMPT] * size,
        negative_prompts=[NEGATIVE] * size,
        seeds=list(range(size)),
        width=cfg.size,
        height=cfg.size,
        steps=cfg.steps,
        guidance_scale=7.0,
        sampler="euler_a",
    )


def vs_reference(state: KitState, image: np.ndarray) -> float | None:
    if state.reference is None or state.reference.shape != image.shape:
        return None
    return psnr(image, state.reference)


def _renderer(cfg: KitConfig, options: GpuOptions) -> DiffusersRenderer:
    """The production path: load the saved folder as a worker would, then the switches."""
    pipe = load_pipeline(
        ModelSource("folder", str(cfg.model_dir)),
        device=cfg.device,
        cache_dir=cfg.work / "models",
        dtype=options.torch_dtype,
    )
    apply_gpu_options(pipe, options)
    return DiffusersRenderer(pipe, model_name="kit")


def stage_model(cfg: KitConfig, budget: Budget, state: KitState) -> dict[str, Any]:
    """Build the random-weight model once, save it (every later stage and the farm load
    that folder), and render the fp32 reference with the ``exact`` tier."""
    started = time.perf_counter()
    if cfg.tiny:
        from worker.tiny_sdxl import build_tiny_sdxl

        pipe = build_tiny_sdxl()
    else:
        from bench._sdxl_full import build_full_sdxl

        pipe = build_full_sdxl(cfg.device, torch.float16)
    sync(cfg.device)
    built_s = time.perf_counter() - started
    params = {
        name: sum(p.numel() for p in getattr(pipe, name).parameters())
        for name in ("unet", "vae", "text_encoder", "text_encoder_2")
    }
    started = time.perf_counter()
    pipe.save_pretrained(cfg.model_dir)
    saved_s = time.perf_counter() - started
    del pipe
    free(cfg.device)
    options = tier_options("exact", device=cfg.device)
    started = time.perf_counter()
    renderer = _renderer(cfg, options)
    loaded_s = time.perf_counter() - started
    started = time.perf_counter()
    [image] = renderer.render(render_batch(cfg, 1))
    sync(cfg.device)
    reference_s = time.perf_counter() - started
    state.reference = pixels([image])[0]
    del renderer
    free(cfg.device)
    size_mb = sum(f.stat().st_size for f in cfg.model_dir.rglob("*") if f.is_file()) / 2**20
    return {
        "model": "tiny-sdxl" if cfg.tiny else "full-size SDXL, random weights",
        "parameters": params,
        "build_s": round(built_s, 1),
        "save_s": round(saved_s, 1),
        "saved_mb": round(size_mb, 1),
        "load_s": round(loaded_s, 1),
        "reference": {"tier": "exact", "options": options.describe(), "seed": 0},
        "reference_s_per_image": round(reference_s, 2),
        "tiers_available": tiers_available(cfg.device),
    }


def stage_baseline(cfg: KitConfig, budget: Budget, state: KitState) -> dict[str, Any]:
    """Plain diffusers in fp16 as it ships (its own attention, the VAE upcast to fp32
    for decoding), prompts as text, one CPU generator per seed like the farm, and
    PyTorch's backend flags as it starts (an earlier stage's tier set them)."""
    from diffusers import StableDiffusionXLPipeline

    flags = stock_backend_flags()
    pipe = StableDiffusionXLPipeline.from_pretrained(
        cfg.model_dir, dtype=torch.float16, add_watermarker=False
    ).to(cfg.device)
    pipe.set_progress_bar_config(disable=True)
    configs = []
    for size in cfg.batches:
        batch = render_batch(cfg, size)
        out: list[Any] = []

        def call(batch: RenderBatch = batch, out: list[Any] = out) -> None:
            generators = [torch.Generator("cpu").manual_seed(s) for s in batch.seeds]
            with torch.inference_mode():
                result = pipe(
                    prompt=batch.prompts,
                    negative_prompt=batch.negative_prompts,
                    width=batch.first.width,
                    height=batch.first.height,
                    num_inference_steps=batch.first.steps,
                    guidance_scale=batch.first.guidance_scale,
                    generator=generators,
                )
            out[:] = result.images

        timing = time_calls(call, images=size, iters=cfg.iters, budget=budget, device=cfg.device)
        configs.append({**timing, "psnr_vs_fp32": vs_reference(state, pixels(out[:1])[0])})
    return {"what": "plain diffusers, fp16", "backend_flags": flags, "configs": configs}


def stage_renderer(
    cfg: KitConfig,
    budget: Budget,
    state: KitState,
    *,
    tier: Tier,
    compile_mode: str,
    batches: tuple[int, ...],
) -> dict[str, Any]:
    """Our renderer (worker/renderer.py) with a tier's switches; ``compile_mode`` "off"
    times it eager. The first call's extra time over a timed one is the compile."""
    from torch._dynamo.utils import counters

    reason = tiers_available(cfg.device)[tier]
    if reason is not None:
        return {"skipped": reason}
    options = tier_options(
        tier, device=cfg.device, compile_mode=compile_mode, cache_dir=cfg.work / "inductor"
    )
    started = time.perf_counter()
    renderer = _renderer(cfg, options)
    load_s = time.perf_counter() - started
    counters.clear()
    configs = []
    for size in batches:
        batch = render_batch(cfg, size)
        out: list[Any] = []

        def call(batch: RenderBatch = batch, out: list[Any] = out) -> None:
            out[:] = renderer.render(batch)

        timing = time_calls(call, images=size, iters=cfg.iters, budget=budget, device=cfg.device)
        if options.compile_mode:
            timing["compile_s"] = round(timing["first_call_s"] - timing["s_per_batch"], 1)
        configs.append({**timing, "psnr_vs_fp32": vs_reference(state, pixels(out[:1])[0])})
    return {  # the run frees the GPU once the stage's locals are gone
        "tier": tier,
        "options": options.describe(),
        "load_s": round(load_s, 1),
        "configs": configs,
        "inductor": dict(counters["inductor"]),
    }
