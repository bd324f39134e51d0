"""Grid expansion: a validated spec becomes ordered cells, and cells become shards.

Cell indices are stable: prompt-major, then bucket, then seed, then the extra axes
(prompt_replace, the combinatorial wildcards, then the setting axes; see
``models.domain.spec.AXIS_ORDER``). Each cell's texts come from the prompt pipeline
(``models.domain.prompt_pipeline``). A shard is a run of cells that share every render
field but those that vary in a shard (texts, seed: ``models.domain.cells.SHARED_FIELDS``),
so that one pipeline call renders it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from models.domain.animagine import DEFAULT_NEGATIVE_PROMPT
from models.domain.axes import as_list
from models.domain.buckets import parse_bucket
from models.domain.cells import Cell, render_key
from models.domain.loras import (
    LoraError,
    LoraSet,
    LoraUnavailable,
    adapter_key,
    merge_loras,
    plain,
    prompt_loras,
    with_hashes,
)
from models.domain.prompt_pipeline import (
    DEFAULT_LIBRARY,
    CellTexts,
    GridTexts,
    Pinned,
    PromptLibrary,
)
from models.domain.spec import MAX_SEED, RANDOM_SEED, SETTING_AXES, FieldError, JobSpec, SpecError
from models.domain.styles import Style
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
    # What the operator's library meant when the job was made: the styles it uses, and
    # the values of each combinatorial wildcard (an axis each, in the spec's order).
    styles: dict[str, Style] = field(default_factory=dict)
    wildcard_axes: dict[str, list[str]] = field(default_factory=dict)
    # The sha256 of each LoRA file the spec's loras and lora_sets name, as enabled then.
    lora_hashes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored form (``jobs.grid``): the settings sit beside the axes."""
        return {
            "prompts": self.prompts,
            "negative_prompt": self.negative_prompt,
            "buckets": self.buckets,
            "seeds": self.seeds,
            "model": self.model,
            "prompt_replace": self.prompt_replace,
            "wildcard_axes": self.wildcard_axes,
            "styles": {
                name: {"prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for name, s in self.styles.items()
            },
            "lora_hashes": self.lora_hashes,
            **{k: json_setting(v) for k, v in self.settings.items()},
        }

    def texts(self) -> GridTexts:
        return GridTexts(self.prompts, self.negative_prompt, self.styles, self.prompt_replace)


def json_setting(value: Any) -> Any:
    """A setting as JSON holds it: a LoRA set (a tuple of uses) as a list of objects."""
    if isinstance(value, tuple):
        return plain(value)
    if isinstance(value, list):
        return [json_setting(v) for v in value]
    return value


@dataclass(frozen=True)
class ShardPlan:
    index: int
    bucket: str
    cell_indices: list[int]
    adapters: str = ""  # models.domain.loras.adapter_key of its cells' LoRA set


def resolve(
    spec: JobSpec, *, default_model: str, library: PromptLibrary = DEFAULT_LIBRARY
) -> ResolvedGrid:
    """Seeds drawn, prompt entries composed, the library's styles and combinatorial lists
    looked up (SpecError for a name it does not have; ``check_limits`` names them first)."""
    seeds = [secrets.randbelow(MAX_SEED + 1) if s == RANDOM_SEED else s for s in spec.seed_list()]
    negative = DEFAULT_NEGATIVE_PROMPT if spec.negative_prompt is None else spec.negative_prompt
    quality, position = spec.quality_tags, spec.quality_tags_position
    missing = [name for name in spec.style_list() if name not in library.styles]
    missing += [f"__{n}__" for n in spec.wildcard_axes or [] if n not in library.wildcards]
    if missing:
        raise SpecError([FieldError("prompts", f"unknown style or wildcard {missing[0]!r}")])
    named = [*spec.loras, *(u for s in spec.lora_sets or [] for u in s)]
    try:
        hashes = {u.name: library.loras[u.name].sha256 for u in named}
    except (KeyError, LoraUnavailable) as exc:
        raise SpecError([FieldError("loras", f"LoRA {exc} cannot be used")]) from None
    return ResolvedGrid(
        prompts=[compose(p, quality_tags=quality, position=position) for p in spec.prompts],
        negative_prompt=negative,
        buckets=list(spec.buckets),
        seeds=seeds,
        model=spec.model or default_model,
        prompt_replace=spec.replace_list(),
        settings=spec.render_settings(),
        styles={n: library.styles[n] for n in spec.style_list()},
        wildcard_axes={n: list(library.wildcards[n]) for n in spec.wildcard_axes or []},
        lora_hashes=hashes,
    )


@dataclass(slots=True)
class CellKey:
    """A cell's place in the grid: what its fields and texts are made from."""

    index: int
    prompt_index: int
    bucket: str
    seed: int
    variant: int  # its Prompt S/R value's index (0: the text unchanged)
    pinned: Pinned  # its combinatorial wildcard values
    settings: dict[str, Any]  # its setting axes' values and the job's settings


def cell_keys(grid: ResolvedGrid) -> Iterator[CellKey]:
    """Every cell's key, in index order (``models.domain.spec.AXIS_ORDER``)."""
    per_job = {k: v for k, v in grid.settings.items() if k not in SETTING_AXES}
    axes = [as_list(grid.settings[name]) for name in SETTING_AXES]
    # The settings of each combination of the setting axes, made once (not per cell).
    settings = [
        {**per_job, **dict(zip(SETTING_AXES, values, strict=True))} for values in product(*axes)
    ]
    pinned_axes = [[(name, v) for v in values] for name, values in grid.wildcard_axes.items()]
    combos = product(
        range(len(grid.prompts)),
        grid.buckets,
        grid.seeds,
        range(max(1, len(grid.prompt_replace))),
        list(product(*pinned_axes)),
    )
    for index, (combo, setting) in enumerate(product(combos, settings)):
        prompt_index, bucket, seed, variant, pinned = combo
        yield CellKey(index, prompt_index, bucket, seed, variant, pinned, setting)


def expand(grid: ResolvedGrid, library: PromptLibrary = DEFAULT_LIBRARY) -> list[Cell]:
    """Every cell of the grid, in index order, with its texts (``library``: the wildcard
    lists that resolve at random)."""
    texts = CellTexts(grid.texts(), library.wildcards, max_chars=None)
    buckets = {name: parse_bucket(name) for name in grid.buckets}  # once, not per cell
    names = {name: bucket.name for name, bucket in buckets.items()}
    values: dict[Pinned, str] = {}  # each combination's JSON, made once
    loras = CellLoras(grid, library)
    cells = []
    for key in cell_keys(grid):
        bucket = buckets[key.bucket]
        prompt, negative = texts.texts(
            key.prompt_index,
            style=key.settings["style"],
            seed=key.seed,
            pinned=key.pinned,
            variant=key.variant,
        )
        if key.pinned not in values:
            values[key.pinned] = json.dumps(dict(key.pinned), ensure_ascii=False)
        cells.append(
            Cell(
                index=key.index,
                prompt_index=key.prompt_index,
                bucket=names[key.bucket],
                prompt=prompt,
                negative_prompt=negative,
                width=bucket.width,
                height=bucket.height,
                seed=key.seed,
                prompt_replace=grid.prompt_replace[key.variant] if grid.prompt_replace else None,
                wildcard_values=values[key.pinned] if key.pinned else None,
                **{
                    **key.settings,
                    "loras": loras.of(key.settings["loras"], key.settings["lora_sets"], prompt),
                },
            )
        )
    return cells


class CellLoras:
    """A cell's LoRA set: the job's, its ``lora_sets`` value's and its prompt's tags
    (``models.domain.loras``), each with its file's hash; made once per distinct input."""

    def __init__(self, grid: ResolvedGrid, library: PromptLibrary) -> None:
        self.hashes = dict(grid.lora_hashes)
        self.library = library
        self._sets: dict[tuple[LoraSet, LoraSet | None, str], LoraSet] = {}

    def of(self, job: LoraSet, axis: LoraSet | None, prompt: str) -> LoraSet:
        key = (job, axis, prompt)
        found = self._sets.get(key)
        if found is None:
            try:
                tags = prompt_loras(prompt)
                for use in tags:
                    if use.name not in self.hashes:
                        self.hashes[use.name] = self.library.loras[use.name].sha256
                found = with_hashes(merge_loras(job, axis or (), tags), self.hashes)
            except (LoraError, KeyError, LoraUnavailable) as exc:  # check_limits names them
                raise SpecError([FieldError("prompts", f"LoRA: {exc}")]) from None
            self._sets[key] = found
        return found


def plan_shards(cells: list[Cell], *, batch_size: int) -> list[ShardPlan]:
    """Group cells by render key (first-seen order) and cut each group into batches."""
    groups: dict[tuple[Any, ...], list[Cell]] = {}
    for cell in cells:
        groups.setdefault(render_key(cell), []).append(cell)
    shards: list[ShardPlan] = []
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            plan = ShardPlan(
                len(shards), batch[0].bucket, [c.index for c in batch], adapter_key(batch[0].loras)
            )
            shards.append(plan)
    return shards
