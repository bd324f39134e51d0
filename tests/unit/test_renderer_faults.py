"""Cancellation between denoising steps, and out-of-memory halving, on the real pipeline."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from worker.renderer import (
    DiffusersRenderer,
    RenderBatch,
    RenderInterrupted,
    render_halving_on_oom,
)
from worker.tiny_sdxl import build_tiny_sdxl


def batch(seeds: list[int], steps: int = 6) -> RenderBatch:
    return RenderBatch.of(
        prompts=["1girl"] * len(seeds),
        negative_prompts=["lowres"] * len(seeds),
        seeds=seeds,
        width=64,
        height=64,
        steps=steps,
        guidance_scale=7.0,
        sampler="euler_a",
    )


@pytest.fixture(scope="module")
def renderer() -> DiffusersRenderer:
    pipe = build_tiny_sdxl()
    pipe.set_progress_bar_config(disable=True)
    return DiffusersRenderer(pipe, model_name="tiny-sdxl")


def test_a_cancelled_render_stops_between_steps(renderer: DiffusersRenderer) -> None:
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) >= 2  # cancelled while step 2 ran

    with pytest.raises(RenderInterrupted):
        renderer.render(batch([1, 2], steps=20), should_stop)
    assert len(asked) == 2  # stopped at the next step boundary, not after 20 steps


def test_an_uncancelled_render_asks_every_step(renderer: DiffusersRenderer) -> None:
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return False

    images = renderer.render(batch([1], steps=5), should_stop)
    assert len(images) == 1
    assert len(asked) == 5


def test_out_of_memory_halves_the_batch_and_keeps_the_pixels(renderer: DiffusersRenderer) -> None:
    """A GPU that fits 1 image at a time: the split batch gives the same images.

    CUDA cannot run here, so the out-of-memory error is raised by a render
    function that refuses batches larger than one, as a full GPU would.
    """
    sizes: list[int] = []

    def small_gpu(b: RenderBatch) -> list[Image.Image]:
        sizes.append(len(b.seeds))
        if len(b.seeds) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return renderer.render(b)

    seeds = [3, 4, 5]
    split = render_halving_on_oom(small_gpu, batch(seeds, steps=2))
    alone = [renderer.render(batch([s], steps=2))[0] for s in seeds]
    assert sizes == [3, 1, 2, 1, 1]
    assert [i.tobytes() for i in split] == [i.tobytes() for i in alone]


def test_a_single_image_that_does_not_fit_is_an_error() -> None:
    def never_fits(_: RenderBatch) -> list[Image.Image]:
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.OutOfMemoryError):
        render_halving_on_oom(never_fits, batch([1, 2]))
