"""Turning a batch of cells into pixels: a warm diffusers pipeline, or a simulation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class RenderBatch:
    """Cells that share every setting but prompt and seed: one pipeline call."""

    prompts: list[str]
    negative_prompts: list[str]
    seeds: list[int]
    width: int
    height: int
    steps: int
    guidance_scale: float
    sampler: str


StopCheck = Callable[[], bool]


class RenderInterrupted(Exception):
    """The job was cancelled while its batch was denoising."""


class Renderer(Protocol):
    model_name: str

    def render(self, batch: RenderBatch, should_stop: StopCheck | None = None) -> list[Image.Image]:
        """Render the batch; raise RenderInterrupted soon after ``should_stop()`` turns true."""
        ...


def split_batch(batch: RenderBatch, lo: int, hi: int) -> RenderBatch:
    return replace(
        batch,
        prompts=batch.prompts[lo:hi],
        negative_prompts=batch.negative_prompts[lo:hi],
        seeds=batch.seeds[lo:hi],
    )


def render_halving_on_oom(
    render: Callable[[RenderBatch], list[Image.Image]], batch: RenderBatch
) -> list[Image.Image]:
    """Out of GPU memory: render each half separately, recursively, down to one image.

    Each cell has its own generator, so a split batch gives the same images.
    """
    import torch

    try:
        return render(batch)
    except torch.OutOfMemoryError:
        size = len(batch.seeds)
        if size == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = size // 2
        return render_halving_on_oom(render, split_batch(batch, 0, half)) + (
            render_halving_on_oom(render, split_batch(batch, half, size))
        )


class DiffusersRenderer:
    """Holds one SDXL pipeline warm for the life of the worker process."""

    def __init__(self, pipe: Any, *, model_name: str) -> None:
        self.pipe = pipe
        self.model_name = model_name
        self._base_scheduler_config = dict(pipe.scheduler.config)
        self._schedulers: dict[str, Any] = {}

    def _scheduler(self, sampler: str) -> Any:
        from worker.samplers import make_scheduler

        if sampler not in self._schedulers:
            self._schedulers[sampler] = make_scheduler(sampler, self._base_scheduler_config)
        return self._schedulers[sampler]

    def render(self, batch: RenderBatch, should_stop: StopCheck | None = None) -> list[Image.Image]:
        return render_halving_on_oom(lambda b: self._render(b, should_stop), batch)

    def _render(self, batch: RenderBatch, should_stop: StopCheck | None) -> list[Image.Image]:
        import torch

        def on_step_end(_pipe: Any, _step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            # Between denoising steps: a cancelled job stops using the GPU here.
            if should_stop is not None and should_stop():
                raise RenderInterrupted
            return kwargs

        self.pipe.scheduler = self._scheduler(batch.sampler)
        # One CPU generator per cell: the noise depends on the seed alone, not on the
        # GPU model or on the cell's position in the batch.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in batch.seeds]
        with torch.inference_mode():
            output = self.pipe(
                prompt=batch.prompts,
                negative_prompt=batch.negative_prompts,
                width=batch.width,
                height=batch.height,
                num_inference_steps=batch.steps,
                guidance_scale=batch.guidance_scale,
                generator=generators,
                output_type="pil",
                callback_on_step_end=on_step_end,
            )
        return list(output.images)


class SimulatedRenderer:
    """Takes a set time per image and draws a real-size image: load tests without a GPU."""

    def __init__(self, *, seconds_per_image: float, model_name: str = "simulated") -> None:
        self.seconds_per_image = seconds_per_image
        self.model_name = model_name

    def render(self, batch: RenderBatch, should_stop: StopCheck | None = None) -> list[Image.Image]:
        deadline = time.perf_counter() + self.seconds_per_image * len(batch.seeds)
        images = [self._draw(seed, batch.width, batch.height) for seed in batch.seeds]
        while (remaining := deadline - time.perf_counter()) > 0:
            if should_stop is not None and should_stop():
                raise RenderInterrupted
            time.sleep(min(remaining, 0.05))
        return images

    @staticmethod
    def _draw(seed: int, width: int, height: int) -> Image.Image:
        # Smooth seeded colour field: deterministic per seed, image-like to compress.
        rng = np.random.default_rng(seed)
        coarse = rng.integers(0, 256, size=(max(1, height // 128), max(1, width // 128), 3))
        small = Image.fromarray(coarse.astype(np.uint8), "RGB")
        return small.resize((width, height), Image.Resampling.BILINEAR)
