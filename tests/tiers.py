"""Rendering the tiny model with forced GPU-path switches, on CPU (tests only).

The switches are forced on by resolving options with explicit values, exactly as a
worker would apply them on CUDA; nothing pretends to be a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from diffusers import StableDiffusionXLPipeline

from worker.gpu_apply import apply_gpu_options
from worker.gpu_options import GpuOptions, tier_options
from worker.renderer import DiffusersRenderer, RenderBatch

# The smallest shapes that exercise every switch (64² is an 8² latent, 1² at the
# UNet's attention level); the kit's CPU rehearsal uses the same, so its compiled
# stage loads this graph from the cache.
SIZE = 64
STEPS = 2
SEEDS = [1, 2]
# A cold compile of the tiny UNet on CPU: 70-90 s of CPU, up to ~4 min on a loaded
# 2-core machine (a test that waits on one gets this long instead of the default).
COMPILE_TIMEOUT_S = 600
# Warnings a compile raises inside torch and diffusers (pytest makes warnings errors):
# diffusers' bf16 upsampling calls an lru_cache'd version check that Dynamo traces
# through, and inductor's CPU backend still touches torch.jit.
COMPILE_WARNINGS = (
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning",
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
)


def render(pipe: Any, seeds: list[int] = SEEDS, size: int = SIZE) -> np.ndarray:
    batch = RenderBatch.of(
        prompts=["1girl, solo, smile"] * len(seeds),
        negative_prompts=["lowres"] * len(seeds),
        seeds=seeds,
        width=size,
        height=size,
        steps=STEPS,
        guidance_scale=7.0,  # CFG: the UNet runs at twice the batch, as in production
        sampler="euler_a",
    )
    images = DiffusersRenderer(pipe, model_name="tiny").render(batch)
    return np.stack([np.asarray(image) for image in images]).astype(np.int16)


def load(folder: Path, options: GpuOptions) -> Any:
    pipe = StableDiffusionXLPipeline.from_pretrained(
        folder, dtype=options.torch_dtype, add_watermarker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return apply_gpu_options(pipe, options)


@contextmanager
def inductor_cache(folder: Path) -> Iterator[None]:
    """Compile into ``folder`` and leave the process environment as it was."""
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            del os.environ["TORCHINDUCTOR_CACHE_DIR"]
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


@dataclass(frozen=True)
class CompiledTier:
    options: GpuOptions
    pipe: Any
    pixels: np.ndarray  # SEEDS at SIZE², compiled
    cache_dir: Path


def compile_standard_tier(model: Path, cache_dir: Path) -> CompiledTier:
    """bf16 + SDPA + channels_last + fused QKV + torch.compile ("default"), rendered once."""
    options = tier_options("standard", device="cpu", cache_dir=cache_dir)
    with inductor_cache(cache_dir):
        pipe = load(model, options)
        pixels = render(pipe)  # compiles here
    return CompiledTier(options, pipe, pixels, cache_dir)
