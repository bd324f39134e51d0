"""The setting axes a viewer picks from: read from a real grid's cells, in grid order."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from models.domain.cells import cell_values
from models.domain.grid import expand, resolve
from models.domain.prompt_pipeline import DEFAULT_LIBRARY
from models.domain.spec import JobSpec
from tests.unit.test_lora_prompts import Catalog
from worker.variant_axes import value_label, variant_axes

SPEC: dict[str, Any] = {
    "prompts": ["1girl"],
    "buckets": ["1:1"],
    "seeds": [1, 2],
    "sampler": ["Euler a", "DPM++ 2M Karras"],
    "steps": [20, 28, 32],
}


LIBRARY = replace(DEFAULT_LIBRARY, loras=Catalog())


def cells_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    grid = resolve(JobSpec.model_validate(body), default_model="m", library=LIBRARY)
    return [cell_values(c) for c in expand(grid)]


def test_a_grid_s_setting_axes_in_order_with_their_values() -> None:
    cells = cells_of(SPEC)
    axes = variant_axes(cells, variants=6)
    assert [(a["field"], a["values"]) for a in axes] == [
        ("sampler", ["euler_a", "dpmpp_2m_karras"]),
        ("steps", ["20", "28", "32"]),
    ]
    # The mixed-radix offset of (sampler 1, steps 2) is the cell with those values.
    seed_2 = cells[6:12]
    assert (seed_2[1 * 3 + 2]["sampler"], seed_2[1 * 3 + 2]["steps"]) == ("dpmpp_2m_karras", 32)


def test_one_value_per_axis_or_cells_that_are_no_product_list_none() -> None:
    assert variant_axes(cells_of({**SPEC, "sampler": "Euler a", "steps": 20}), variants=1) == []
    cells = cells_of(SPEC)
    cells[1], cells[2] = cells[2], cells[1]  # a refinement's cells, made one by one
    assert variant_axes(cells, variants=6) == []


LORA_GRID: dict[str, Any] = {
    **SPEC,
    "steps": 20,
    "lora_sets": [[], [{"name": "flat", "weight": 0.8}, {"name": "ink", "weight": 1}]],
}


def test_a_lora_set_is_an_axis_read_as_a1111_writes_its_tags() -> None:
    axes = variant_axes(cells_of(LORA_GRID), variants=4)
    assert [(a["label"], a["values"]) for a in axes] == [
        ("LoRA set", ["none", "flat:0.8, ink:1.0"]),
        ("sampler", ["euler_a", "dpmpp_2m_karras"]),
    ]
    assert value_label([]) == "none"
