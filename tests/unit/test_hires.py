"""Hi-res fix: sizes, A1111's step semantics, module sharing, infotext."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import pytest
from diffusers import StableDiffusionXLPipeline

from models.domain.infotext import RenderParameters, format_infotext, parse_infotext
from worker.hires import hires_size, img2img_schedule
from worker.renderer import DiffusersRenderer, RenderBatch, SimulatedRenderer
from worker.tiny_sdxl import build_tiny_sdxl

BATCH = RenderBatch.of(
    prompts=["1girl, solo"],
    negative_prompts=["lowres"],
    seeds=[9],
    width=64,
    height=64,
    steps=2,
    guidance_scale=7.0,
    sampler="euler_a",
    hires_scale=1.5,
    hires_strength=0.55,
)


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((1024, 1024), 1.5, (1536, 1536)),
        ((832, 1216), 1.5, (1248, 1824)),
        ((1536, 640), 1.25, (1920, 800)),
        ((1024, 1024), 1.3, (1328, 1328)),  # 1331.2 rounds to the nearest multiple of 8
        ((1344, 768), 1.0, (1344, 768)),
    ],
)
def test_output_size_is_the_bucket_times_scale_in_multiples_of_8(
    size: tuple[int, int], scale: float, expected: tuple[int, int]
) -> None:
    assert hires_size(*size, scale) == expected
    assert all(side % 8 == 0 for side in expected)


def test_the_schedule_runs_exactly_the_requested_steps() -> None:
    assert img2img_schedule(28, 0.55) == (50, 0.57)  # A1111: 28 steps of a 50-step schedule
    for steps in range(1, 151):
        for strength in (0.05, 0.1, 0.3, 0.35, 0.5, 0.55, 0.7, 0.75, 0.999, 1.0):
            schedule, adjusted = img2img_schedule(steps, strength)
            # What diffusers' img2img runs (get_timesteps):
            assert min(int(schedule * adjusted), schedule) == steps, (steps, strength)
            assert adjusted <= 1.0
            assert schedule == max(steps, min(1000, int(steps / min(strength, 0.999))))


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionXLPipeline:
    return build_tiny_sdxl()


@pytest.fixture(scope="module")
def renderer(pipe: StableDiffusionXLPipeline) -> DiffusersRenderer:
    return DiffusersRenderer(pipe, model_name="tiny-sdxl")


@contextmanager
def unet_calls(pipe: StableDiffusionXLPipeline) -> Iterator[list[int]]:
    calls: list[int] = []
    handle = pipe.unet.register_forward_hook(lambda _m, _a, _o: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def test_hires_renders_at_the_scaled_size_with_shared_modules(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    with unet_calls(pipe) as calls:
        [image] = renderer.render(BATCH)
    assert image.size == (96, 96)
    assert len(calls) == 2 + 2  # the first pass, then the same number of hi-res steps
    img2img = renderer._img2img
    for name in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        assert getattr(img2img, name) is getattr(pipe, name), name
    assert img2img.scheduler is not pipe.scheduler  # each pass keeps its own state
    # Same seed, same pixels; a different strength, different pixels.
    [again] = renderer.render(BATCH)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(again))
    [other] = renderer.render(BATCH.with_fields(hires_strength=0.9))
    assert not np.array_equal(np.asarray(image), np.asarray(other))


def test_hires_steps_are_the_steps_the_second_pass_runs(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    batch = BATCH.with_fields(
        hires_scale=1.25, hires_strength=0.5, hires_steps=3, sampler="dpmpp_2m"
    )
    with unet_calls(pipe) as calls:
        [image] = renderer.render(batch)
    assert len(calls) == 2 + 3
    assert image.size == (80, 80)
    # A plain render after a hi-res one is unaffected by it.
    plain = BATCH.with_fields(hires_scale=None, hires_strength=None, sampler="dpmpp_2m")
    fresh = DiffusersRenderer(pipe, model_name="tiny-sdxl")
    [a], [b] = renderer.render(plain), fresh.render(plain)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_simulated_renderer_draws_the_output_size() -> None:
    [image] = SimulatedRenderer(seconds_per_image=0).render(BATCH)
    assert image.size == (96, 96)


def test_infotext_records_hires_like_a1111() -> None:
    params = RenderParameters(
        prompt="1girl, (solo:1.2)",
        negative_prompt="lowres",
        steps=28,
        sampler="euler_a",
        guidance_scale=7.0,
        seed=1,
        width=1024,
        height=1024,
        model="animagine-xl-3.1",
        emphasis="no_norm",
        hires_scale=1.5,
        hires_steps=12,
        hires_strength=0.55,
    )
    text = format_infotext(params)
    assert text.endswith(
        "Size: 1024x1024, Model: animagine-xl-3.1, Emphasis: No norm, Denoising strength: 0.55, "
        "Hires upscale: 1.5, Hires steps: 12, Quality tier: standard, "
        "Hires upscaler: Latent (nearest-exact)"
    )
    assert parse_infotext(text) == params
    unset = replace(params, hires_steps=None, emphasis="original")
    assert "Hires steps" not in format_infotext(unset)
    assert "Emphasis" not in format_infotext(unset)
    assert parse_infotext(format_infotext(unset)) == unset
