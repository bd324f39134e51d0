"""Grid expansion: a validated spec becomes ordered cells, and cells become shards.

Cell indices are stable: prompt-major, then bucket, then seed. A shard is a
run of cells that share every render setting but prompt and seed, so that one
pipeline call renders it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from itertools import product

from models.animagine import DEFAULT_NEGATIVE_PROMPT, compose_prompt
from models.buckets import parse_bucket
from models.spec import MAX_SEED, RANDOM_SEED, JobSpec


@dataclass(frozen=True)
class ResolvedGrid:
    """A spec with every default and random choice made concrete (what is stored)."""

    prompts: list[str]  # composed: quality tags applied
    negative_prompt: str
    buckets: list[str]
    seeds: list[int]
    steps: int
    guidance_scale: float
    sampler: str
    model: str


@dataclass(frozen=True)
class Cell:
    index: int
    prompt_index: int
    prompt: str
    negative_prompt: str
    bucket: str
    width: int
    height: int
    seed: int
    steps: int
    guidance_scale: float
    sampler: str

    @property
    def render_key(self) -> tuple[str, int, float, str, str]:
        """Cells with equal keys can share one pipeline call."""
        return (self.bucket, self.steps, self.guidance_scale, self.sampler, self.negative_prompt)


@dataclass(frozen=True)
class ShardPlan:
    index: int
    bucket: str
    cell_indices: list[int]


def resolve(spec: JobSpec, *, default_model: str) -> ResolvedGrid:
    seeds = [secrets.randbelow(MAX_SEED + 1) if s == RANDOM_SEED else s for s in spec.seed_list()]
    negative = DEFAULT_NEGATIVE_PROMPT if spec.negative_prompt is None else spec.negative_prompt
    return ResolvedGrid(
        prompts=[compose_prompt(p, quality_tags=spec.quality_tags) for p in spec.prompts],
        negative_prompt=negative,
        buckets=list(spec.buckets),
        seeds=seeds,
        steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        sampler=spec.sampler,
        model=spec.model or default_model,
    )


def expand(grid: ResolvedGrid) -> list[Cell]:
    cells = []
    combos = product(enumerate(grid.prompts), grid.buckets, grid.seeds)
    for index, ((prompt_index, prompt), bucket_name, seed) in enumerate(combos):
        bucket = parse_bucket(bucket_name)
        cells.append(
            Cell(
                index=index,
                prompt_index=prompt_index,
                prompt=prompt,
                negative_prompt=grid.negative_prompt,
                bucket=bucket.name,
                width=bucket.width,
                height=bucket.height,
                seed=seed,
                steps=grid.steps,
                guidance_scale=grid.guidance_scale,
                sampler=grid.sampler,
            )
        )
    return cells


def plan_shards(cells: list[Cell], *, batch_size: int) -> list[ShardPlan]:
    """Group cells by render key (first-seen order) and cut each group into batches."""
    groups: dict[tuple[str, int, float, str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.render_key, []).append(cell)
    shards: list[ShardPlan] = []
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            shards.append(ShardPlan(len(shards), batch[0].bucket, [c.index for c in batch]))
    return shards
