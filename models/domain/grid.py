"""Grid expansion: a validated spec becomes ordered cells, and cells become shards.

Cell indices are stable: prompt-major, then bucket, then seed, then the extra axes
(prompt_replace, then the setting axes; see ``models.domain.spec.AXIS_ORDER``). A shard
is a run of cells that share every render field but those that vary in a shard (prompt,
seed: ``models.domain.cells.SHARED_FIELDS``), so that one pipeline call renders it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from itertools import product
from typing import Any

from models.domain.animagine import DEFAULT_NEGATIVE_PROMPT
from models.domain.axes import as_list, replace_variants
from models.domain.buckets import parse_bucket
from models.domain.cells import Cell, render_key
from models.domain.spec import MAX_SEED, RANDOM_SEED, SETTING_AXES, JobSpec
from models.domain.tags import compose


@dataclass(frozen=True)
class ResolvedGrid:
    """A spec with every default and random choice made concrete (what is stored)."""

    prompts: list[str]  # composed: tag fields and quality tags applied
    negative_prompt: str
    buckets: list[str]
    seeds: list[int]
    model: str
    prompt_replace: list[str]  # empty: no Prompt S/R axis
    # The cells' render fields set per job, by name: a value, or a list for an axis.
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The stored form (``jobs.grid``): the settings sit beside the axes."""
        return {
            "prompts": self.prompts,
            "negative_prompt": self.negative_prompt,
            "buckets": self.buckets,
            "seeds": self.seeds,
            "model": self.model,
            "prompt_replace": self.prompt_replace,
            **self.settings,
        }


@dataclass(frozen=True)
class ShardPlan:
    index: int
    bucket: str
    cell_indices: list[int]


def resolve(spec: JobSpec, *, default_model: str) -> ResolvedGrid:
    seeds = [secrets.randbelow(MAX_SEED + 1) if s == RANDOM_SEED else s for s in spec.seed_list()]
    negative = DEFAULT_NEGATIVE_PROMPT if spec.negative_prompt is None else spec.negative_prompt
    quality, position = spec.quality_tags, spec.quality_tags_position
    return ResolvedGrid(
        prompts=[compose(p, quality_tags=quality, position=position) for p in spec.prompts],
        negative_prompt=negative,
        buckets=list(spec.buckets),
        seeds=seeds,
        model=spec.model or default_model,
        prompt_replace=spec.replace_list(),
        settings=spec.render_settings(),
    )


def expand(grid: ResolvedGrid) -> list[Cell]:
    """Every cell of the grid, in index order (``models.domain.spec.AXIS_ORDER``)."""
    replacements: list[str | None] = list(grid.prompt_replace) or [None]
    buckets = {name: parse_bucket(name) for name in grid.buckets}  # once, not per cell
    per_job = {k: v for k, v in grid.settings.items() if k not in SETTING_AXES}
    axes = [as_list(grid.settings[name]) for name in SETTING_AXES]
    # The settings of each combination of the setting axes, made once (not per cell).
    settings = [
        {**per_job, **dict(zip(SETTING_AXES, values, strict=True))} for values in product(*axes)
    ]
    variants: dict[str, list[str]] = {}  # a text's Prompt S/R variants, made once
    cells = []
    combos = product(enumerate(grid.prompts), grid.buckets, grid.seeds, enumerate(replacements))
    for index, (combo, setting) in enumerate(product(combos, settings)):
        (prompt_index, prompt), bucket_name, seed, (variant, value) = combo
        bucket = buckets[bucket_name]
        negative = grid.negative_prompt
        if value is not None:
            for text in (prompt, negative):
                if text not in variants:
                    variants[text] = replace_variants(text, grid.prompt_replace)
            prompt, negative = variants[prompt][variant], variants[negative][variant]
        cells.append(
            Cell(
                index=index,
                prompt_index=prompt_index,
                bucket=bucket.name,
                prompt=prompt,
                negative_prompt=negative,
                width=bucket.width,
                height=bucket.height,
                seed=seed,
                prompt_replace=value,
                **setting,
            )
        )
    return cells


def plan_shards(cells: list[Cell], *, batch_size: int) -> list[ShardPlan]:
    """Group cells by render key (first-seen order) and cut each group into batches."""
    groups: dict[tuple[Any, ...], list[Cell]] = {}
    for cell in cells:
        groups.setdefault(render_key(cell), []).append(cell)
    shards: list[ShardPlan] = []
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            shards.append(ShardPlan(len(shards), batch[0].bucket, [c.index for c in batch]))
    return shards
