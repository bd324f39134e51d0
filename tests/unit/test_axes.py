"""Grid axes: counts, order and per-cell values for every axis, limits on the product."""

from __future__ import annotations

import uuid
from itertools import product
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Item
from models.domain.buckets import parse_bucket
from models.domain.cells import Cell, render_key
from models.domain.estimate import image_seconds
from models.domain.grid import expand, plan_shards, resolve
from models.domain.limits import check_limits
from models.domain.spec import AXIS_ORDER, JobSpec, SpecError
from models.infra.settings import Settings
from tests.conftest import ApiClient

FULL: dict[str, Any] = {
    "prompts": ["1girl, red hair", "1boy, red eyes"],
    "negative_prompt": "lowres, red",
    "quality_tags": False,
    "buckets": ["1:1", "13:19"],
    "seeds": [11, 12],
    "prompt_replace": ["red", "blue"],
    "sampler": ["Euler a", "DPM++ 2M Karras"],
    "steps": [20, 28],
    "guidance_scale": [5.0, 7.0],
}


# Every axis with two values: the setting axes include the style.
EVERY_AXIS: dict[str, Any] = {**FULL, "style": ["(None)", "Anime"]}


def cells_of(body: dict[str, Any]) -> list[Cell]:
    return expand(resolve(JobSpec.model_validate(body), default_model="m"))


def test_the_axes_are_documented_outermost_first() -> None:
    spec = JobSpec.model_validate(EVERY_AXIS)
    assert (
        list(spec.axis_sizes())
        == list(AXIS_ORDER)
        == [
            "prompts",
            "buckets",
            "seeds",
            "prompt_replace",
            "style",
            "lora_sets",
            "sampler",
            "steps",
            "guidance_scale",
            "quality_tier",
        ]
    )
    assert spec.axis_sizes() == {**dict.fromkeys(AXIS_ORDER, 2), "lora_sets": 1, "quality_tier": 1}
    assert spec.cell_count() == 2**8


def test_every_axis_nests_in_the_documented_order() -> None:
    cells = cells_of(EVERY_AXIS)
    assert len(cells) == 256 and [c.index for c in cells] == list(range(256))
    expected = product(
        [0, 1],
        ["1024x1024", "832x1216"],
        [11, 12],
        ["red", "blue"],
        ["(None)", "Anime"],
        ["euler_a", "dpmpp_2m_karras"],
        [20, 28],
        [5.0, 7.0],
    )
    got = [
        (
            c.prompt_index,
            c.bucket,
            c.seed,
            c.prompt_replace,
            c.style,
            c.sampler,
            c.steps,
            c.guidance_scale,
        )
        for c in cells
    ]
    assert got == list(expected)


def test_prompt_replace_changes_prompt_and_negative() -> None:
    cells = cells_of({**FULL, "sampler": "euler_a", "steps": 28, "guidance_scale": 7.0})
    first, second = cells[0], cells[1]  # prompt 0, 1:1, seed 11: "red" then "blue"
    assert (first.prompt, first.negative_prompt) == ("1girl, red hair", "lowres, red")
    assert (second.prompt, second.negative_prompt) == ("1girl, blue hair", "lowres, blue")
    assert (first.prompt_replace, second.prompt_replace) == ("red", "blue")
    assert first.seed == second.seed
    assert {c.prompt for c in cells if c.prompt_index == 1} == {"1boy, red eyes", "1boy, blue eyes"}


def test_prompt_replace_reaches_the_quality_tags() -> None:
    cells = cells_of({"prompts": ["1girl"], "prompt_replace": ["best quality", "worst quality"]})
    assert [c.prompt.split(", ")[1] for c in cells] == ["best quality", "worst quality"]


def test_a_single_value_axis_keeps_the_original_grid() -> None:
    cells = cells_of({"prompts": ["a", "b"], "buckets": ["1:1", "13:19"], "seeds": [1, 2]})
    assert [(c.prompt_index, c.bucket, c.seed) for c in cells] == list(
        product([0, 1], ["1024x1024", "832x1216"], [1, 2])
    )
    assert {(c.sampler, c.steps, c.guidance_scale, c.prompt_replace) for c in cells} == {
        ("euler_a", 28, 7.0, None)
    }


@pytest.mark.parametrize(
    ("axis", "values", "stored"),
    [
        ("steps", [4, 8, 12], [4, 8, 12]),
        ("guidance_scale", [4.5, 6, 7.5], [4.5, 6, 7.5]),
        (
            "sampler",
            ["Euler a", "dpmpp_2m", "DPM++ 2M Karras"],
            ["euler_a", "dpmpp_2m", "dpmpp_2m_karras"],
        ),
        ("prompt_replace", ["solo", "duo", "trio"], ["solo", "duo", "trio"]),
    ],
)
def test_each_axis_multiplies_the_grid(axis: str, values: list[Any], stored: list[Any]) -> None:
    cells = cells_of({"prompts": ["1girl, solo"], "seeds": [1, 2], axis: values})
    assert len(cells) == 2 * 3
    assert [getattr(c, axis) for c in cells] == stored * 2  # innermost of the seeds
    assert [c.seed for c in cells] == [1, 1, 1, 2, 2, 2]


def test_shards_never_mix_render_settings() -> None:
    cells = cells_of(EVERY_AXIS)
    shards = plan_shards(cells, batch_size=4)
    by_index = {c.index: c for c in cells}
    assert sorted(i for s in shards for i in s.cell_indices) == list(range(256))
    for shard in shards:
        assert len({render_key(by_index[i]) for i in shard.cell_indices}) == 1


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"sampler": ["Euler a", "DDIM", "warp drive"]}, "sampler.2", "valid samplers"),
        ({"sampler": ["Euler a", "euler_a"]}, "sampler", "repeated"),
        ({"steps": [10, 0]}, "steps.1", "greater than or equal to 1"),
        ({"steps": []}, "steps", "at least 1"),
        ({"guidance_scale": [7, 99]}, "guidance_scale.1", "less than or equal to 30"),
        ({"prompt_replace": ["zebra", "horse"]}, "prompt_replace", "neither prompts.0"),
        ({"prompt_replace": []}, "prompt_replace", "at least 1"),
        ({"prompt_replace": ["solo", ""]}, "prompt_replace.1", "at least 1 character"),
        ({"emphasis": "ignore"}, "emphasis", "no_norm"),
        ({"hires": {"scale": 4}}, "hires.scale", "less than or equal to 2"),
        ({"hires": {"strength": 0}}, "hires.strength", "greater than 0"),
        ({"hires": {"upscaler": "esrgan"}}, "hires.upscaler", "not permitted"),
    ],
)
def test_axis_errors_name_the_entry(
    api: ApiClient, changes: dict[str, Any], field: str, reason: str
) -> None:
    body = {"prompts": ["1girl, solo"], "seeds": [1], **changes}
    response = api.client.post("/v1/jobs", json=body, headers=api.auth)
    assert response.status_code == 422, response.text
    fields = {d["field"]: d["reason"] for d in response.json()["detail"]}
    assert field in fields, fields
    assert reason in fields[field]


def test_limits_count_the_full_product() -> None:
    settings = Settings(max_grid_cells=100, max_steps=50)
    ok = JobSpec.model_validate({"prompts": ["a"], "seeds": {"start": 0, "count": 25}})
    check_limits(ok, settings.limits)
    too_many = JobSpec.model_validate(
        {
            "prompts": ["a"],
            "seeds": {"start": 0, "count": 26},
            "steps": [10, 20],
            "sampler": ["euler", "ddim"],
        }
    )
    with pytest.raises(SpecError) as caught:
        check_limits(too_many, settings.limits)
    assert [e.field for e in caught.value.errors] == ["prompts"]
    assert "the grid has 104 cells; the limit is 100" in str(caught.value)
    steps = JobSpec.model_validate({"prompts": ["a"], "steps": [10, 60], "hires": {"steps": 51}})
    with pytest.raises(SpecError) as caught:
        check_limits(steps, settings.limits)
    assert [e.field for e in caught.value.errors] == ["steps.1", "hires.steps"]


def test_cells_are_stored_with_their_axis_values(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    body = {
        "prompts": ["1girl, solo"],
        "seeds": [3],
        "steps": [2, 3],
        "guidance_scale": 5.5,
        "sampler": ["Euler a", "DDIM"],
        "prompt_replace": ["solo", "duo"],
        "emphasis": "no_norm",
        "hires": {"scale": 1.5, "strength": 0.5},
    }
    response = api.client.post("/v1/jobs", json=body, headers=api.auth)
    assert response.status_code == 201, response.text
    assert response.json()["total"] == 8
    with sessions() as session:
        items = session.scalars(
            select(Item).where(Item.job_id == uuid.UUID(response.json()["id"])).order_by(Item.index)
        ).all()
        rows = [
            (i.prompt, i.prompt_replace, i.sampler, i.steps, i.guidance_scale, i.emphasis)
            for i in items
        ]
        hires = {(i.hires_scale, i.hires_strength, i.hires_steps) for i in items}
    q = "masterpiece, best quality, very aesthetic, absurdres, 1girl, "
    assert rows[:4] == [
        (q + "solo", "solo", "euler_a", 2, 5.5, "no_norm"),
        (q + "solo", "solo", "euler_a", 3, 5.5, "no_norm"),
        (q + "solo", "solo", "ddim", 2, 5.5, "no_norm"),
        (q + "solo", "solo", "ddim", 3, 5.5, "no_norm"),
    ]
    assert {r[:2] for r in rows[4:]} == {(q + "duo", "duo")}
    assert hires == {(1.5, 0.5, None)}


def test_the_estimate_scales_with_steps_cfg_and_hires() -> None:
    [cell] = cells_of({"prompts": ["a"], "seeds": [1]})
    assert image_seconds(cell) == pytest.approx(parse_bucket("1024x1024").seconds_28)
    [fewer] = cells_of({"prompts": ["a"], "seeds": [1], "steps": 14})
    assert 0.5 * image_seconds(cell) < image_seconds(fewer) < 0.53 * image_seconds(cell)
    [no_cfg] = cells_of({"prompts": ["a"], "seeds": [1], "guidance_scale": 1.0})
    assert image_seconds(no_cfg) < 0.52 * image_seconds(cell)
    [hires] = cells_of({"prompts": ["a"], "seeds": [1], "hires": {"scale": 1.5}})
    # A second pass of 28 steps at 2.25× the pixels: about 3.2× the plain image.
    assert 3.0 * image_seconds(cell) < image_seconds(hires) < 3.4 * image_seconds(cell)
    # Each 75-token chunk past the first adds about 1.25% of the UNet's work.
    assert 1.01 * image_seconds(cell) < image_seconds(cell, 2) < 1.015 * image_seconds(cell)
