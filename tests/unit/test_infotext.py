from __future__ import annotations

import pytest

from models.domain.animagine import DEFAULT_NEGATIVE_PROMPT
from models.domain.infotext import RenderParameters, format_infotext, parse_infotext


def test_a1111_layout() -> None:
    p = RenderParameters(
        "1girl, solo", "lowres", 28, "euler_a", 7.0, 42, 832, 1216, "animagine-xl-3.1"
    )
    assert format_infotext(p) == (
        "1girl, solo\nNegative prompt: lowres\n"
        "Steps: 28, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 832x1216, "
        "Model: animagine-xl-3.1"
    )


@pytest.mark.parametrize(
    "params",
    [
        RenderParameters(
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
        RenderParameters(
            "multi\nline prompt", "", 2, "dpmpp_2m_karras", 5.5, 0, 640, 1536, "model: with, commas"
        ),
        RenderParameters(
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
