"""Where a job's cells sit: prompts, buckets, seeds and variants, and its storage folder."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from models.db.artifacts import find_job
from models.infra.storage import job_folder, thumb_name
from worker.manifest import relative_file


@dataclass(frozen=True)
class JobLayout:
    folder: str
    prompts: list[str]  # as the client wrote them (sheet titles)
    buckets: list[str]
    seeds: list[int]
    model: str
    variants: int  # cells per (prompt, bucket, seed): the innermost axes (sampler, steps, ...)
    # A refinement's groups (one "prompt" per parent cell) each have their own bucket and
    # seeds (models/domain/refine.py child_grid); None: the grid's, for every prompt.
    group_buckets: list[str] | None = None
    group_seeds: list[list[int]] | None = None

    def buckets_for(self, prompt: int) -> list[str]:
        return [self.group_buckets[prompt]] if self.group_buckets else self.buckets

    def seeds_for(self, prompt: int) -> list[int]:
        return self.group_seeds[prompt] if self.group_seeds else self.seeds

    @property
    def per_prompt(self) -> int:
        return len(self.buckets) * len(self.seeds) * self.variants

    def prompt_of(self, index: int) -> int:
        return index // self.per_prompt

    def sheet_position(self, index: int) -> tuple[int, int]:
        """(row, column) of a cell on its prompt's sheet: rows are seeds, columns buckets."""
        seeds = len(self.seeds)
        return index // self.variants % seeds, index // self.variants // seeds % len(self.buckets)

    def thumb_key(self, image_key: str) -> str:
        return f"{self.folder}/{thumb_name(relative_file(image_key, self.folder))}"


def load_layout(
    session: Session, *, job_id: uuid.UUID, tenant_id: uuid.UUID, prefix: str
) -> JobLayout | None:
    job = find_job(session, job_id=job_id)
    if job is None:
        return None
    grid, spec = dict(job.grid), dict(job.spec)
    cells_per_variant = len(grid["prompts"]) * len(grid["buckets"]) * len(grid["seeds"])
    return JobLayout(
        folder=job_folder(prefix=prefix, tenant_id=tenant_id, job_id=job_id),
        prompts=list(spec.get("prompts") or grid["prompts"]),
        buckets=list(grid["buckets"]),
        seeds=list(grid["seeds"]),
        model=job.model,
        variants=max(1, job.total // cells_per_variant),
        group_buckets=grid.get("group_buckets"),
        group_seeds=grid.get("group_seeds"),
    )
