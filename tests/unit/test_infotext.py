from __future__ import annotations

from dataclasses import replace

import pytest

from models.domain.animagine import DEFAULT_NEGATIVE_PROMPT
from models.domain.infotext import RenderParameters, format_infotext, parse_infotext


def parameters(
    prompt: str,
    negative_prompt: str,
    steps: int,
    sampler: str,
    guidance_scale: float,
    seed: int,
    width: int,
    height: int,
    model: str,
) -> RenderParameters:
    return RenderParameters(
        prompt=prompt,
        negative_prompt=negative_prompt,
        steps=steps,
        sampler=sampler,
        guidance_scale=guidance_scale,
        seed=seed,
        width=width,
        height=height,
        model=model,
    )


def test_a1111_layout() -> None:
    p = parameters("1girl, solo", "lowres", 28, "euler_a", 7.0, 42, 832, 1216, "animagine-xl-3.1")
    assert format_infotext(p) == (
        "1girl, solo\nNegative prompt: lowres\n"
        "Steps: 28, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 832x1216, "
        "Model: animagine-xl-3.1, Quality tier: standard"
    )
    exact = format_infotext(replace(p, quality_tier="exact"))
    assert exact.endswith("Quality tier: exact")
    assert parse_infotext(exact).quality_tier == "exact"


@pytest.mark.parametrize(
    "params",
    [
        parameters(
            "masterpiece, 1girl, (smile:1.2)",
            DEFAULT_NEGATIVE_PROMPT,
            28,
            "euler_a",
            7.0,
            4294967295,
            1024,
            1024,
            "animagine-xl-3.1",
        ),
        parameters(
            "multi\nline prompt", "", 2, "dpmpp_2m_karras", 5.5, 0, 640, 1536, "model: with, commas"
        ),
        parameters(
            "Steps: 3, tricky",
            "Negative prompt inside",
            30,
            "ddim",
            12.25,
            7,
            1536,
            640,
            "tiny-sdxl",
        ),
    ],
)
def test_round_trip(params: RenderParameters) -> None:
    assert parse_infotext(format_infotext(params)) == params
