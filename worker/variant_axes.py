"""The axes inside one (prompt, bucket, seed) place of a grid, for the viewers.

A grid's cells are laid out outermost first (``models.domain.spec.AXIS_ORDER``): prompt,
bucket, seed, then the setting axes (Prompt S/R, wildcards, style, LoRA set, sampler,
steps, CFG, quality tier). The gallery arranges the first three; for the others a viewer
picks one value of each. Read from the cells themselves, so what is listed is what was
rendered: a plain grid's first place holds each combination once, in grid order.
"""

from __future__ import annotations

import json
from math import prod
from typing import Any

from models.domain.spec import SETTING_AXES

# The setting axes as cell fields, outermost first (AXIS_ORDER after seeds; several
# wildcard axes share one field, ``wildcard_values``: together one axis of combinations).
VARIANT_FIELDS = ("prompt_replace", "wildcard_values", *SETTING_AXES)
LABELS = {"lora_sets": "LoRA set", "guidance_scale": "CFG", "prompt_replace": "Prompt S/R"}


def value_label(value: Any) -> str:
    """A value as a person reads it: a LoRA set as A1111 writes its tags' name:weight."""
    if isinstance(value, list):
        if not value:
            return "none"
        return ", ".join(
            f"{v.get('name')}:{v.get('weight')}" if isinstance(v, dict) else str(v) for v in value
        )
    return "none" if value is None else str(value)


def variant_axes(cells: list[dict[str, Any]], variants: int) -> list[dict[str, Any]]:
    """The setting axes with more than one value, outermost first: ``{field, label,
    values}``. Empty when the cells are not such a product (a refinement's cells, made
    one by one from its parent's): a viewer then shows each place's first cell."""
    if variants <= 1 or len(cells) < variants:
        return []
    first = cells[:variants]
    axes: list[dict[str, Any]] = []
    for field in VARIANT_FIELDS:
        seen = dict.fromkeys(json.dumps(c.get(field), sort_keys=True) for c in first)
        if len(seen) > 1:
            values = [value_label(json.loads(v)) for v in seen]
            axes.append({"field": field, "label": LABELS.get(field, field), "values": values})
    if prod(len(a["values"]) for a in axes) != variants or not _is_product(first, axes):
        return []
    return axes


def _is_product(cells: list[dict[str, Any]], axes: list[dict[str, Any]]) -> bool:
    """Each cell's values sit where the mixed-radix position of its index says."""
    sizes = [len(a["values"]) for a in axes]
    for offset, cell in enumerate(cells):
        rest, digits = offset, []
        for size in reversed(sizes):
            digits.append(rest % size)
            rest //= size
        for axis, digit in zip(axes, reversed(digits), strict=True):
            if value_label(cell.get(axis["field"])) != axis["values"][digit]:
                return False
    return True
