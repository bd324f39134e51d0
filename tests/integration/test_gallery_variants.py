"""The gallery in a real Chromium: a grid's setting axes (here sampler x LoRA set) are
picked with a select each, and a LoRA set reads as name:weight in the viewer."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser

from tests.unit.test_variant_axes import LORA_GRID, cells_of
from worker.gallery import build_gallery
from worker.variant_axes import variant_axes

pytestmark = pytest.mark.slow


def _manifest() -> dict[str, Any]:
    # A real grid's cells: 2 seeds x 2 LoRA sets x 2 samplers.
    cells = cells_of(LORA_GRID)
    for cell in cells:
        cell.update(status="done", file=f"{cell['index']}.png", thumb=f"{cell['index']}.jpg")
    variants = variant_axes(cells, variants=4)
    return {
        "job": {"id": "j", "name": "variants", "status": "succeeded", "done": 8, "total": 8},
        "model": {"name": "tiny-sdxl", "revision": "r"},
        "axes": {"prompt": ["1girl"], "bucket": ["1024x1024"], "seed": [1, 2]},
        "variants": variants,
        "cell_fields": [["sampler", "Sampler"], ["steps", "Steps"], ["lora_sets", "LoRA sets"]],
        "contact_sheets": [],
        "best_of": [],
        "cells": cells,
    }


def test_each_setting_axis_is_picked_with_a_select(browser: Browser) -> None:
    manifest = _manifest()
    assert [a["field"] for a in manifest["variants"]] == ["lora_sets", "sampler"]
    page = browser.new_page()
    page.set_default_timeout(60_000)  # a busy machine
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_content(build_gallery(manifest))
    shown = "ns => ns.map(n => +n.dataset.index)"
    assert page.eval_on_selector_all("#grids img", shown) == [0, 4]  # each seed's first
    page.select_option("select.variant[data-field=lora_sets]", "1")
    page.select_option("select.variant[data-field=sampler]", "1")
    assert page.eval_on_selector_all("#grids img", shown) == [3, 7]  # offset 1 * 2 + 1
    page.click("#grids img >> nth=0")
    params = page.locator("#params")
    assert "flat:0.8" in params.inner_text() and "[object Object]" not in params.inner_text()
    page.close()
    assert errors == []
