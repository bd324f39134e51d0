"""The PNG's ``parameters`` as A1111 reads them: every field it needs to make the image again.

``tests/a1111_infotext.py`` reads our infotexts the way the web UI does (a transcription
of its documented reader). ``tests/fixtures/a1111_infotext.png`` holds an infotext laid
out as the web UI 1.10 writes one (its ``create_infotext``: field order, quoting), built
from that format here since the web UI itself does not run on this machine; the farm
reads it back.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from models.domain.cells import RenderParams
from models.domain.infotext import Receipt, format_infotext, parameters_of, parse_infotext
from tests.a1111_infotext import parse_generation_parameters, parse_version

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "a1111_infotext.png"

CELL = RenderParams(
    prompt="1girl, [red hair:blue hair:10], [cat|dog] ears, (smile:1.2), \\(fate\\)\nsecond line",
    negative_prompt="nsfw, lowres, [blurry::5]",
    steps=28,
    sampler="dpmpp_2m_karras",
    guidance_scale=5.5,
    seed=4294967295,
    width=832,
    height=1216,
    emphasis="no_norm",
    hires_scale=1.5,
    hires_strength=0.55,
    hires_steps=12,
    style="Anime",
)
RECEIPT = Receipt(model_hash="0a1b2c3d4e", rng="CPU", pad_conds=True, version="farm 0.1.0")


def test_a1111_reads_every_field_back() -> None:
    text = format_infotext(parameters_of(CELL, "model: with, commas", RECEIPT))
    read = parse_generation_parameters(text)
    assert read["Prompt"] == CELL.prompt  # prompt-editing syntax kept: A1111 schedules it
    assert read["Negative prompt"] == CELL.negative_prompt
    assert {k: read[k] for k in ("Steps", "Sampler", "CFG scale", "Seed")} == {
        "Steps": "28",
        "Sampler": "DPM++ 2M Karras",
        "CFG scale": "5.5",
        "Seed": "4294967295",
    }
    assert (read["Size-1"], read["Size-2"]) == ("832", "1216")
    assert read["Model"] == "model: with, commas"
    assert read["Model hash"] == "0a1b2c3d4e"
    assert read["RNG"] == "CPU"  # without it A1111 would draw GPU noise
    assert read["Pad conds"] == "True"
    assert read["Emphasis"] == "No norm"
    assert (read["Denoising strength"], read["Hires upscale"], read["Hires steps"]) == (
        "0.55",
        "1.5",
        "12",
    )
    assert read["Hires upscaler"] == "Latent (nearest-exact)"
    assert read["Version"] == "farm 0.1.0"
    assert "Styles array" not in read and "Anime" not in text  # the expanded prompt is all


def test_the_version_turns_on_no_backward_compatibility_switch() -> None:
    # A1111 turns on old prompt-editing timelines, "Pad conds v0" and more for an infotext
    # whose Version parses below 1.6; "farm x.y.z" does not parse, so none is turned on.
    assert parse_version("farm 0.1.0") is None
    assert parse_version("0.1.0") is not None  # what a bare number would have done
    assert parse_version("v1.10.1") is not None


def test_defaults_stay_out_as_a1111_leaves_them_out() -> None:
    plain = RenderParams(
        prompt="1girl",
        negative_prompt="",
        steps=28,
        sampler="euler_a",
        guidance_scale=7.0,
        seed=1,
        width=1024,
        height=1024,
    )
    read = parse_generation_parameters(format_infotext(parameters_of(plain, "m", Receipt())))
    assert read["RNG"] == "GPU"  # A1111's default when the renderer recorded nothing
    for key in ("Pad conds", "Model hash", "Emphasis", "Hires upscale", "Version"):
        assert key not in read


def test_the_farm_reads_an_a1111_png() -> None:
    with Image.open(FIXTURE) as png:
        text = png.info["parameters"]
    ours = parse_infotext(text)
    assert ours.prompt.startswith("1girl, [red hair:blue hair:10], (smile:1.2)")
    assert ours.negative_prompt == "nsfw, lowres, (bad), text, error"
    assert (ours.steps, ours.sampler, ours.guidance_scale, ours.seed) == (
        28,
        "euler_a",
        7.0,
        1234567890,
    )
    assert (ours.width, ours.height, ours.model) == (832, 1216, "animagine-xl-3.1")
    assert (ours.hires_scale, ours.hires_strength, ours.hires_steps) == (1.5, 0.55, 12)
    assert ours.emphasis == "no_norm"
    assert (ours.model_hash, ours.rng, ours.pad_conds, ours.version) == (
        "0a1b2c3d4e",
        "CPU",
        True,
        "v1.10.1",
    )
    # Written again by the farm, A1111 reads the same values (its own keys aside).
    again = parse_generation_parameters(format_infotext(ours))
    original = parse_generation_parameters(text)
    shared = set(again) - {"Schedule type", "Quality tier"}  # the farm's own receipt
    assert {k: again[k] for k in shared} == {k: original[k] for k in shared}
    assert parse_infotext(format_infotext(ours)) == ours
