"""Prompt fidelity through the real worker path: API → Postgres → ShardRunner → S3 → PNG.

A grid with varied samplers, steps, CFG, weighted long prompts, tag fields, an empty
negative, "no_norm" emphasis and a hi-res fix, and one with prompt editing, alternation,
a style and wildcards, are submitted over HTTP, rendered by an in-process
``ShardRunner`` (the tiny SDXL pipeline, real Postgres, moto's S3), and every PNG's
infotext is parsed back, by the farm and by an A1111-compatible reader, and compared
with the cell it came from.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from models.db.keys import create_api_key
from models.domain.infotext import parse_infotext
from models.domain.prompt_schedule import passes_of, step_texts
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from models.infra.storage import make_storage
from tests.a1111_infotext import parse_generation_parameters
from worker.prompt_encoding import tokenize_chunks
from worker.renderer import DiffusersRenderer
from worker.shard_runner import Outcome, ShardRunner
from worker.tiny_sdxl import build_tiny_sdxl, build_tokenizers

MODEL = "fidelity-tiny"  # a model name of its own: this runner claims only these shards

LONG_PROMPT = (
    "1girl, (souryuu asuka langley:1.3), neon genesis evangelion, [school uniform],\n"
    + ", ".join(["long hair", "blue eyes", "(smile:1.1)", "solo", "upper body"] * 12)
    + " BREAK cherry blossoms, outdoors, ((sky))"
)
SAMPLER_GRID: dict[str, Any] = {
    "prompts": [
        LONG_PROMPT,
        {"subject": "1boy", "character": "ikari shinji", "tags": "solo, (smile:1.2)"},
    ],
    "buckets": ["1536x640"],
    "seeds": [21],
    "sampler": ["Euler a", "DPM++ 2M Karras"],
    "steps": [2, 3],
    "guidance_scale": 5.5,
    "model": MODEL,
}
HIRES_GRID: dict[str, Any] = {
    "prompts": [{"subject": "1girl", "tags": ["(red hair:1.2)", "smile"], "rating": "safe"}],
    "negative_prompt": "",
    "quality_tags": "light",
    "quality_tags_position": "append",
    "buckets": ["1536x640"],
    "seeds": [4],
    "steps": 2,
    "guidance_scale": [1.0, 6.5],
    "emphasis": "no_norm",
    "hires": {"scale": 1.25, "strength": 0.5, "steps": 2},
    "model": MODEL,
}


LANGUAGE_GRID: dict[str, Any] = {
    "prompts": ["1girl, [red hair:blue hair:1], [smile|frown], {cat|dog} ears"],
    "negative_prompt": "lowres, [blurry::1]",
    "style": ["(None)", "Anime"],
    "buckets": ["1536x640"],
    "seeds": [8],
    "steps": 2,
    "hires": {"scale": 1.25, "strength": 0.5, "steps": 2},
    "model": MODEL,
}


@pytest.fixture
def farm_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"models": {**settings.models, MODEL: "tiny-sdxl"}})


@pytest.fixture
def client(farm_settings: Settings, sessions: sessionmaker[Session]) -> Iterator[TestClient]:
    with sessions.begin() as session:
        key = create_api_key(session, tenant_name=f"fidelity-{uuid.uuid4().hex[:8]}")
    app = create_app(farm_settings, publisher=LocalPublisher())
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def render_all(settings: Settings, sessions: sessionmaker[Session]) -> int:
    renderer = DiffusersRenderer(build_tiny_sdxl(), model_name=MODEL)
    runner = ShardRunner(
        settings=settings,
        sessions=sessions,
        storage=make_storage(settings),
        renderer_for=lambda _name, _tier="standard": renderer,
        worker_id=f"fidelity-{uuid.uuid4().hex[:6]}",
    )
    shards = 0
    try:
        while runner.run_next(MODEL) is Outcome.RENDERED:
            shards += 1
        runner.drain()
    finally:
        runner.close()
    return shards


def pads(cell: dict[str, Any]) -> bool:
    """Whether any step of the cell's passes has a prompt and a negative prompt of different
    chunk counts (counted with the tiny model's tokenizer, as the worker does)."""
    tokenizer = build_tokenizers()[0]
    passes = passes_of(
        cell["sampler"],
        cell["steps"],
        hires=cell["hires_scale"] is not None,
        hires_steps=cell["hires_steps"],
    )
    steps = [passes.first, passes.hires]
    prompt, negative = passes.schedules(cell["prompt"]), passes.schedules(cell["negative_prompt"])
    schedules = zip(prompt, negative, strict=True)
    for (prompts, negatives), length in zip(schedules, steps, strict=False):
        assert length is not None
        for p, n in zip(step_texts(prompts, length), step_texts(negatives, length), strict=True):
            if len(tokenize_chunks(p, tokenizer)) != len(tokenize_chunks(n, tokenizer)):
                return True
    return False


def test_every_png_carries_its_cell(
    client: TestClient, farm_settings: Settings, sessions: sessionmaker[Session]
) -> None:
    grids = (SAMPLER_GRID, HIRES_GRID, LANGUAGE_GRID)
    jobs = [client.post("/v1/jobs", json=grid).json() for grid in grids]
    assert [job["total"] for job in jobs] == [8, 2, 2]
    started = time.perf_counter()
    shards = render_all(farm_settings, sessions)
    print(f"\n10 tiny cells in {shards} shards: {time.perf_counter() - started:.1f} s")

    storage = make_storage(farm_settings)
    checked = padded = 0
    for job in jobs:
        final = client.get(f"/v1/jobs/{job['id']}").json()
        assert (final["status"], final["done"]) == ("succeeded", job["total"]), final
        cells = client.get(f"/v1/jobs/{job['id']}/images").json()["items"]
        for cell in cells:
            png = Image.open(io.BytesIO(storage.get(cell["key"])))
            params = parse_infotext(png.info["parameters"])
            a1111 = parse_generation_parameters(png.info["parameters"])
            assert (a1111["Prompt"], a1111["Seed"]) == (cell["prompt"].strip(), str(cell["seed"]))
            assert (a1111["RNG"], a1111["Version"]) == ("CPU", params.version)
            assert params.version is not None and params.version.startswith("farm ")
            # Padded where a step's prompt and negative take different numbers of chunks.
            assert a1111.get("Pad conds") == ("True" if pads(cell) else None)
            padded += pads(cell)
            assert params.prompt == cell["prompt"]
            assert params.negative_prompt == cell["negative_prompt"]
            assert params.sampler == cell["sampler"]
            assert params.steps == cell["steps"]
            assert params.guidance_scale == cell["guidance_scale"]
            assert params.seed == cell["seed"]
            assert (params.width, params.height) == (cell["width"], cell["height"])
            assert params.model == MODEL
            checked += 1
            if job is jobs[0]:
                assert png.size == (1536, 640)
                assert params.hires_scale is None and params.emphasis == "original"
            elif job is jobs[2]:
                assert "[red hair:blue hair:1], [smile|frown]" in params.prompt
                assert params.negative_prompt.startswith("lowres, [blurry::1]")
            else:
                assert png.size == (1920, 800)  # 1536x640 × 1.25: Size keeps the first pass
                assert (params.hires_scale, params.hires_strength) == (1.25, 0.5)
                assert (params.hires_steps, params.emphasis) == (2, "no_norm")
        if job is jobs[0]:
            axes = [(c["prompt_index"], c["sampler"], c["steps"]) for c in cells]
            assert axes == [
                (p, s, n) for p in (0, 1) for s in ("euler_a", "dpmpp_2m_karras") for n in (2, 3)
            ]
            assert cells[0]["prompt"].endswith(LONG_PROMPT)  # newline and weights kept
            assert cells[4]["prompt"].endswith(r"1boy, ikari shinji, solo, (smile:1.2)")
            assert cells[0]["negative_prompt"].startswith("nsfw, lowres, (bad)")
        elif job is jobs[2]:
            assert [c["style"] for c in cells] == ["(None)", "Anime"]
            ears = {"cat ears" in c["prompt"] for c in cells}
            assert len(ears) == 1  # the same seed: the same wildcard choice in both styles
            assert cells[1]["prompt"].endswith("studio anime, highly detailed")
        else:
            assert [c["guidance_scale"] for c in cells] == [1.0, 6.5]
            assert {c["prompt"] for c in cells} == {
                "1girl, (red hair:1.2), smile, safe, best quality"
            }
            assert {c["negative_prompt"] for c in cells} == {""}
            assert {c["rating"] for c in cells} == {"safe"}
    assert checked == 12
    assert 0 < padded < checked
