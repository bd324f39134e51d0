"""The renderer feeds A1111-style embeddings to the pipeline: what that does to images."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image

from models.domain.cells import SHARED_FIELDS
from worker.renderer import DiffusersRenderer, RenderBatch
from worker.tiny_sdxl import build_tiny_sdxl

LONG_PROMPT = ", ".join(["long hair", "blue eyes", "smile", "solo", "school uniform"] * 14)
BATCH = RenderBatch.of(
    prompts=["1girl, solo"],
    negative_prompts=["lowres, bad anatomy"],
    seeds=[5],
    width=64,
    height=64,
    steps=2,
    guidance_scale=7.0,
    sampler="euler_a",
)


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionXLPipeline:
    return build_tiny_sdxl()


@pytest.fixture(scope="module")
def renderer(pipe: StableDiffusionXLPipeline) -> DiffusersRenderer:
    return DiffusersRenderer(pipe, model_name="tiny-sdxl")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def render(renderer: DiffusersRenderer, *prompts: str, **changes: Any) -> list[np.ndarray]:
    negatives = changes.pop("negative_prompts", [BATCH.negative_prompts[0]] * len(prompts))
    seeds = changes.pop("seeds", [BATCH.seeds[0]] * len(prompts))
    shared = {name: getattr(BATCH.first, name) for name in SHARED_FIELDS}
    batch = RenderBatch.of(
        prompts=list(prompts), negative_prompts=negatives, seeds=seeds, **{**shared, **changes}
    )
    return [pixels(image) for image in renderer.render(batch)]


def plain_diffusers(
    pipe: StableDiffusionXLPipeline, prompts: list[str], negative: str | None, seeds: list[int]
) -> list[np.ndarray]:
    pipe.scheduler = pipe.scheduler.from_config(pipe.scheduler.config)
    images = pipe(
        prompt=prompts,
        negative_prompt=None if negative is None else [negative] * len(prompts),
        width=64,
        height=64,
        num_inference_steps=2,
        guidance_scale=7.0,
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
        output_type="pil",
    ).images
    return [pixels(image) for image in images]


def assert_same_render(ours: np.ndarray, theirs: np.ndarray) -> None:
    """The same render, up to float reduction order. The embeddings are the same values,
    but the two paths call the encoders and the pipeline separately, and on a busy
    machine torch's CPU kernels may split a reduction across threads differently
    between two calls: a last-bit difference that the VAE can turn into one 8-bit
    level on a few pixels (shared/NOTES.md: kernel choice alone moves pixels by at
    most one level). Different embeddings would move every pixel."""
    difference = np.abs(ours - theirs)
    assert difference.max() <= 2, difference.max()
    assert difference.mean() < 0.05, difference.mean()


def test_plain_prompts_render_like_diffusers(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    prompts = ["1girl, solo", "1boy, outdoors, sky"]
    ours = render(renderer, *prompts, seeds=[5, 6])
    theirs = plain_diffusers(pipe, prompts, BATCH.negative_prompts[0], [5, 6])
    for a, b in zip(ours, theirs, strict=True):
        assert_same_render(a, b)
    assert np.abs(ours[0] - ours[1]).mean() > 1  # and the bound is far below a change
    # An empty negative is diffusers' "no negative prompt" (zeros).
    [ours_empty] = render(renderer, "1girl, solo", negative_prompts=[""])
    [theirs_none] = plain_diffusers(pipe, ["1girl, solo"], None, [5])
    assert_same_render(ours_empty, theirs_none)


def test_the_last_tags_of_a_long_prompt_change_the_image(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    assert len(pipe.tokenizer(LONG_PROMPT).input_ids) > 180
    changed = LONG_PROMPT + ", red eyes, blush"
    ours = render(renderer, LONG_PROMPT, changed)
    assert not np.array_equal(ours[0], ours[1])
    # Plain diffusers truncates at 77 tokens: the same tail makes no difference there.
    theirs = plain_diffusers(pipe, [LONG_PROMPT, changed], "lowres", [5, 5])
    np.testing.assert_array_equal(theirs[0], theirs[1])


def test_a_weight_changes_the_image(renderer: DiffusersRenderer) -> None:
    plain, weighted, weighted_again = render(
        renderer, "1girl, smile, solo", "1girl, (smile:1.5), solo", "1girl, (smile:1.5), solo"
    )
    assert not np.array_equal(plain, weighted)
    np.testing.assert_array_equal(weighted, weighted_again)
    [no_norm] = render(renderer, "1girl, (smile:1.5), solo", emphasis="no_norm")
    assert not np.array_equal(no_norm, weighted)


def test_a_cell_renders_the_same_whatever_its_batch(renderer: DiffusersRenderer) -> None:
    # A 3-chunk prompt in the batch must not pad its 1-chunk neighbours.
    [alone] = render(renderer, "1girl, solo")
    [long_alone] = render(renderer, LONG_PROMPT, seeds=[6])
    mixed = render(renderer, "1girl, solo", LONG_PROMPT, "1girl, solo", seeds=[5, 6, 5])
    np.testing.assert_array_equal(mixed[0], alone)
    np.testing.assert_array_equal(mixed[2], alone)
    np.testing.assert_array_equal(mixed[1], long_alone)


@contextmanager
def count_calls(module: torch.nn.Module) -> Iterator[list[int]]:
    calls: list[int] = []
    handle = module.register_forward_hook(lambda _m, _args, _out: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def test_each_distinct_text_is_encoded_once_per_shard(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    renderer.encoder.empty()  # the padding chunk is encoded once per renderer, not per shard
    prompts = ["1girl, solo", "1boy", "1girl, solo", "1boy"]
    with count_calls(pipe.text_encoder) as te1, count_calls(pipe.text_encoder_2) as te2:
        render(renderer, *prompts, seeds=[1, 2, 3, 4])
    # Two distinct prompts and the shared negative, one chunk each.
    assert len(te1) == len(te2) == 3
    with count_calls(pipe.text_encoder) as te1:
        render(renderer, LONG_PROMPT, LONG_PROMPT, seeds=[1, 2])
    assert len(te1) == 3 + 1  # three chunks of the prompt, one of the negative
