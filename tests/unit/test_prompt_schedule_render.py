"""Prompt editing and alternation on the tiny SDXL pipeline: what the UNet is given at each step.

A forward pre-hook on the UNet records the text conditioning of every call. Each step's
must be exactly the encoding of that step's text alone (its own ``PromptEncoder.encode``,
padded against the negative as a plain prompt would be), for both encoders (the pooled
embedding switches with it), for long prompts and BREAK, in the first pass and in the
hi-res pass, whose timeline follows A1111's rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline

from models.domain.prompt_schedule import prompt_schedule, step_texts
from worker.renderer import DiffusersRenderer, RenderBatch, receipt_of
from worker.tiny_sdxl import build_tiny_sdxl

LONG = ", ".join(["long hair", "blue eyes", "smile", "solo", "school uniform"] * 14)  # 3 chunks
NEGATIVE = "lowres, bad anatomy"


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionXLPipeline:
    return build_tiny_sdxl()


@pytest.fixture(scope="module")
def renderer(pipe: StableDiffusionXLPipeline) -> DiffusersRenderer:
    return DiffusersRenderer(pipe, model_name="tiny-sdxl")


@contextmanager
def unet_inputs(
    pipe: StableDiffusionXLPipeline,
) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """(encoder_hidden_states, pooled text_embeds) of every UNet call, in order."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        calls.append(
            (
                kwargs["encoder_hidden_states"].clone(),
                kwargs["added_cond_kwargs"]["text_embeds"].clone(),
            )
        )

    handle = pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def batch(*prompts: str, **changes: Any) -> RenderBatch:
    fields: dict[str, Any] = {
        "width": 64,
        "height": 64,
        "steps": 6,
        "guidance_scale": 7.0,
        "sampler": "euler_a",
        **changes,
    }
    negatives = fields.pop("negative_prompts", [NEGATIVE] * len(prompts))
    seeds = fields.pop("seeds", [5] * len(prompts))
    return RenderBatch.of(prompts=list(prompts), negative_prompts=negatives, seeds=seeds, **fields)


def expected_inputs(
    renderer: DiffusersRenderer, texts: list[str], negative: str = NEGATIVE
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """What a plain prompt of each text would give the UNet, step by step: CFG's negative
    then prompt, each encoded alone and padded to the same number of chunks."""
    encoder = renderer.encoder
    found = []
    for text in texts:
        embeds = encoder.batch(
            [text],
            [negative],
            {text: encoder.encode(text)},
            {negative: encoder.encode_negative(negative)},
        )
        found.append(
            (
                torch.cat([embeds.negative_prompt_embeds, embeds.prompt_embeds]),
                torch.cat([embeds.negative_pooled_prompt_embeds, embeds.pooled_prompt_embeds]),
            )
        )
    return found


def assert_steps(
    calls: list[tuple[torch.Tensor, torch.Tensor]],
    expected: list[tuple[torch.Tensor, torch.Tensor]],
) -> None:
    assert len(calls) == len(expected)
    for step, ((states, pooled), (want_states, want_pooled)) in enumerate(
        zip(calls, expected, strict=True)
    ):
        assert torch.equal(states, want_states), f"step {step}"
        assert torch.equal(pooled, want_pooled), f"step {step}"


def test_prompt_editing_switches_after_its_step(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    prompt = "1girl, [red hair:blue hair:2], smile"
    with unet_inputs(pipe) as calls:
        renderer.render(batch(prompt))
    # A1111: steps 0, 1, 2 encode "red hair" (step <= 2), steps 3-5 "blue hair".
    texts = ["1girl, red hair, smile"] * 3 + ["1girl, blue hair, smile"] * 3
    assert step_texts(prompt_schedule(prompt, 6), 6) == texts
    assert_steps(calls, expected_inputs(renderer, texts))


def test_alternation_switches_every_step(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    with unet_inputs(pipe) as calls:
        renderer.render(batch("1girl, [cat|dog] ears"))
    texts = step_texts(prompt_schedule("1girl, [cat|dog] ears", 6), 6)
    assert len(set(texts)) == 2
    assert_steps(calls, expected_inputs(renderer, texts))


def test_long_prompts_and_break_inside_a_schedule(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    # Three chunks until step 2, then a BREAK prompt of two chunks: the negative is padded
    # to each step's own length, and the shapes change between steps.
    prompt = f"[{LONG}:1girl BREAK (smile:1.3):2]"
    with unet_inputs(pipe) as calls:
        [image] = renderer.render(batch(prompt))
    texts = step_texts(prompt_schedule(prompt, 6), 6)
    assert texts == [LONG] * 3 + ["1girl BREAK (smile:1.3)"] * 3
    assert [c[0].shape[1] for c in calls] == [3 * 77] * 3 + [2 * 77] * 3
    assert_steps(calls, expected_inputs(renderer, texts))
    receipt = receipt_of(image)
    assert receipt is not None and receipt.pad_conds  # the negative was padded
    [plain] = renderer.render(batch("1girl, smile"))
    assert receipt_of(plain) is not None and not receipt_of(plain).pad_conds  # type: ignore[union-attr]


def test_second_order_samplers_count_two_steps_per_step(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    # A1111 schedules Heun over 2 x steps; diffusers calls the UNet 2 x steps - 1 times.
    prompt = "[red:blue:4] hair"
    with unet_inputs(pipe) as calls:
        renderer.render(batch(prompt, steps=3, sampler="heun"))
    texts = step_texts(prompt_schedule(prompt, 6), 6)[:5]
    assert texts == ["red hair"] * 5  # steps 0-4 <= 4: the switch falls after the last call
    assert_steps(calls, expected_inputs(renderer, texts))
    with unet_inputs(pipe) as calls:
        renderer.render(batch("[red:blue:2] hair", steps=3, sampler="heun"))
    assert_steps(calls, expected_inputs(renderer, ["red hair"] * 3 + ["blue hair"] * 2))


def test_the_hires_pass_has_its_own_timeline(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    # [a:b:1.5]: the first pass is all "a"; the hi-res pass switches half way through.
    # [c:d:0.5]: half way through the first pass; the hi-res pass is all "d".
    prompt = "[red:blue:1.5] hair, [cat:dog:0.5]"
    hires = {"hires_scale": 1.25, "hires_strength": 0.5, "hires_steps": 4}
    with unet_inputs(pipe) as calls:
        renderer.render(batch(prompt, steps=4, **hires))
    first = ["red hair, cat"] * 3 + ["red hair, dog"]
    second = ["red hair, dog"] * 3 + ["blue hair, dog"]
    assert step_texts(prompt_schedule(prompt, 4), 4) == first
    assert step_texts(prompt_schedule(prompt, 4, 4), 4) == second
    assert_steps(calls, expected_inputs(renderer, first + second))


def test_a_scheduled_cell_renders_the_same_whatever_its_batch(renderer: DiffusersRenderer) -> None:
    scheduled = "1girl, [red hair:blue hair:3], [smile|frown]"
    [alone] = renderer.render(batch(scheduled))
    [again] = renderer.render(batch(scheduled))
    mixed = renderer.render(batch("1girl", scheduled, f"[{LONG}:solo:2]", seeds=[7, 5, 9]))
    np.testing.assert_array_equal(np.asarray(alone), np.asarray(again))
    np.testing.assert_array_equal(np.asarray(mixed[1]), np.asarray(alone))
    # And the schedule is not one of its texts rendered throughout.
    [red] = renderer.render(batch("1girl, red hair, smile"))
    assert not np.array_equal(np.asarray(red), np.asarray(alone))


def test_the_negative_prompt_is_scheduled_too(
    pipe: StableDiffusionXLPipeline, renderer: DiffusersRenderer
) -> None:
    negative = "lowres, [blurry::3]"
    with unet_inputs(pipe) as calls:
        renderer.render(batch("1girl", negative_prompts=[negative]))
    negatives = step_texts(prompt_schedule(negative, 6), 6)
    assert negatives == ["lowres, blurry"] * 4 + ["lowres, "] * 2
    expected = [expected_inputs(renderer, ["1girl"], n)[0] for n in negatives]
    assert_steps(calls, expected)
