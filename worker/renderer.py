"""Turning a batch of cells into pixels: a warm diffusers pipeline, or a simulation."""

from __future__ import annotations

import time
from dataclasses import dataclass
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


class Renderer(Protocol):
    model_name: str

    def render(self, batch: RenderBatch) -> list[Image.Image]: ...


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

    def render(self, batch: RenderBatch) -> list[Image.Image]:
        import torch

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
            )
        return list(output.images)


class SimulatedRenderer:
    """Takes a set time per image and draws a real-size image: load tests without a GPU."""

    def __init__(self, *, seconds_per_image: float, model_name: str = "simulated") -> None:
        self.seconds_per_image = seconds_per_image
        self.model_name = model_name

    def render(self, batch: RenderBatch) -> list[Image.Image]:
        deadline = time.perf_counter() + self.seconds_per_image * len(batch.seeds)
        images = [self._draw(seed, batch.width, batch.height) for seed in batch.seeds]
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)
        return images

    @staticmethod
    def _draw(seed: int, width: int, height: int) -> Image.Image:
        # Smooth seeded colour field: deterministic per seed, image-like to compress.
        rng = np.random.default_rng(seed)
        coarse = rng.integers(0, 256, size=(max(1, height // 128), max(1, width // 128), 3))
        small = Image.fromarray(coarse.astype(np.uint8), "RGB")
        return small.resize((width, height), Image.Resampling.BILINEAR)
