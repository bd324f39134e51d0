"""Turning a batch of cells into pixels: a warm diffusers pipeline, or a simulation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
from PIL import Image

from models.domain.infotext import Receipt
from worker.environment import farm_version
from worker.lora_adapters import PipelineAdapters, require_no_loras
from worker.prompt_encoding import PromptEncoder, encode_distinct
from worker.render_batch import (
    RECEIPT_KEY,
    RenderBatch,
    receipt_of,
    select_cells,
    split_batch,
)
from worker.step_conds import Encoded, StepConds, cell_steps

__all__ = ["RECEIPT_KEY", "RenderBatch", "receipt_of", "select_cells", "split_batch"]

StopCheck = Callable[[], bool]


class RenderInterrupted(Exception):
    """The job was cancelled while its batch was denoising."""


class RendererFor(Protocol):
    """The renderer of a model at a quality tier (loaded once, kept warm)."""

    def __call__(self, model: str, tier: str = "standard") -> Renderer: ...


class Renderer(Protocol):
    """It may also tell the LoRA set it has active (worker/lora_adapters.py)."""

    model_name: str

    def render(self, batch: RenderBatch, should_stop: StopCheck | None = None) -> list[Image.Image]:
        """Render the batch; raise RenderInterrupted soon after ``should_stop()`` turns true."""
        ...


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
    """Holds one SDXL pipeline warm for the life of the worker process.

    Prompts are encoded A1111's way (``worker.prompt_encoding``: weights, long prompts,
    BREAK), each distinct text of each step once per shard, and fed to the pipeline as
    embeddings that switch between steps where prompt editing says so
    (``worker.step_conds``). Cells whose steps need different numbers of 77-token chunks
    render in separate pipeline calls, so that no cell is padded for a neighbour: a
    cell's pixels do not depend on the shard it was batched in.
    """

    def __init__(
        self,
        pipe: Any,
        *,
        model_name: str,
        model_hash: str | None = None,
        tf32: bool | None = None,
        adapters: PipelineAdapters | None = None,
    ) -> None:
        self.pipe = pipe
        self.adapters = adapters  # None: no LoRA is enabled (FARM_LORAS is empty)
        self.model_name = model_name
        self.receipt = Receipt(model_hash=model_hash, rng="CPU", version=farm_version())
        self.tf32 = tf32  # set for each call (a process-wide switch); None: leave it
        self.encoder = PromptEncoder(pipe)
        self._base_scheduler_config = dict(pipe.scheduler.config)
        self._schedulers: dict[tuple[str, str], Any] = {}
        self._img2img: Any = None  # built on the first hi-res cell, sharing pipe's modules

    def _scheduler(self, sampler: str, stage: str = "txt2img") -> Any:
        # One scheduler per sampler and pass: the hi-res pass never shares the first
        # pass's scheduler state (img2img sets a begin index on it).
        from worker.samplers import make_scheduler

        if (sampler, stage) not in self._schedulers:
            scheduler = make_scheduler(sampler, self._base_scheduler_config)
            self._schedulers[(sampler, stage)] = scheduler
        return self._schedulers[(sampler, stage)]

    @property
    def active_adapters(self) -> str | None:
        return "" if self.adapters is None else self.adapters.active_key

    def render(self, batch: RenderBatch, should_stop: StopCheck | None = None) -> list[Image.Image]:
        # The shard's LoRA set first: the text encoders may carry adapters too.
        if self.adapters is None:
            require_no_loras(batch.first.loras)
        elif self.adapters.activate(batch.first.loras):
            self.encoder.forget()
        # Each distinct text of every step once for the whole shard, whatever the splits.
        steps = [cell_steps(cell) for cell in batch.cells]
        emphasis = batch.first.emphasis
        prompts = (t for s in steps for pass_texts in s.prompts for t in pass_texts)
        negatives = (t for s in steps for pass_texts in s.negatives for t in pass_texts)
        encoded = Encoded(
            encode_distinct(self.encoder, prompts, emphasis=emphasis),
            encode_distinct(self.encoder, negatives, emphasis=emphasis, negative=True),
        )
        groups: dict[tuple[int, ...], list[int]] = {}  # chunks per step -> cells, in order
        for i, cell_texts in enumerate(steps):
            groups.setdefault(encoded.profile(cell_texts), []).append(i)
        images: dict[int, Image.Image] = {}
        for indices in groups.values():
            rendered = render_halving_on_oom(
                lambda b: self._render(b, encoded, should_stop), select_cells(batch, indices)
            )
            images.update(zip(indices, rendered, strict=True))
        for i, cell_texts in enumerate(steps):
            receipt = replace(self.receipt, pad_conds=encoded.pads(cell_texts))
            images[i].info[RECEIPT_KEY] = receipt
        return [images[i] for i in range(len(batch.cells))]

    def _render(
        self, batch: RenderBatch, encoded: Encoded, should_stop: StopCheck | None
    ) -> list[Image.Image]:
        import torch

        from worker.hires import img2img_pipeline, second_pass

        def between_steps() -> None:
            # Between denoising steps: a cancelled job stops using the GPU here.
            if should_stop is not None and should_stop():
                raise RenderInterrupted

        first = batch.first
        if self.tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32
        steps = [cell_steps(cell) for cell in batch.cells]
        conds = StepConds(self.encoder, encoded, steps, pass_index=0)
        self.pipe.scheduler = self._scheduler(first.sampler)
        # One CPU generator per cell: the noise depends on the seed alone, not on the
        # GPU model or on the cell's position in the batch (the infotext's "RNG: CPU").
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in batch.seeds]
        shared = {"guidance_scale": first.guidance_scale, "generator": generators}
        if batch.bases is not None and batch.hires is not None:
            return self._hires_from_images(batch, encoded, steps, shared, between_steps)
        with torch.inference_mode():
            output = self.pipe(
                width=first.width,
                height=first.height,
                num_inference_steps=first.steps,
                output_type="pil" if batch.hires is None else "latent",
                callback_on_step_end=conds.callback(between_steps),
                **conds.first.as_kwargs(),
                **shared,
            )
            if batch.hires is None:
                return list(output.images)
            if self._img2img is None:
                self._img2img = img2img_pipeline(self.pipe)
            hires_conds = StepConds(self.encoder, encoded, steps, pass_index=1)
            return second_pass(
                self._img2img,
                output.images,
                batch.hires,
                first_pass_steps=first.steps,
                width=first.width,
                height=first.height,
                scheduler=self._scheduler(first.sampler, "hires"),
                callback_on_step_end=hires_conds.callback(between_steps),
                **hires_conds.first.as_kwargs(),
                **shared,
            )

    def _hires_from_images(
        self,
        batch: RenderBatch,
        encoded: Encoded,
        steps: list[Any],
        shared: dict[str, Any],
        between_steps: Callable[[], None],
    ) -> list[Image.Image]:
        """A refinement's hi-res pass on its parent's images: no base pass at all."""
        import torch

        from worker.hires import img2img_pipeline, pass_from_images

        assert batch.bases is not None and batch.hires is not None
        first = batch.first
        if self._img2img is None:
            self._img2img = img2img_pipeline(self.pipe)
        hires_conds = StepConds(self.encoder, encoded, steps, pass_index=1)
        with torch.inference_mode():
            return pass_from_images(
                self._img2img,
                list(batch.bases),
                batch.hires,
                first_pass_steps=first.steps,
                width=first.width,
                height=first.height,
                scheduler=self._scheduler(first.sampler, "hires"),
                callback_on_step_end=hires_conds.callback(between_steps),
                **hires_conds.first.as_kwargs(),
                **shared,
            )


class SimulatedRenderer:
    """Takes a set time per image and draws a real-size image: load tests without a GPU."""

    def __init__(self, *, seconds_per_image: float, model_name: str = "simulated") -> None:
        self.seconds_per_image = seconds_per_image
        self.model_name = model_name

    def render(self, batch: RenderBatch, should_stop: StopCheck | None = None) -> list[Image.Image]:
        deadline = time.perf_counter() + self.seconds_per_image * len(batch.seeds)
        width, height = batch.output_size
        images = [self._draw(seed, width, height) for seed in batch.seeds]
        for image in images:
            image.info[RECEIPT_KEY] = Receipt(version=farm_version())
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
