"""What a client asks for: the grid spec, validated field by field.

Type and value rules live on the model; limits that the operator configures
(grid size, prompt length, enabled models) are checked by ``check_limits``
so that the same spec class serves the API, the CLI and campaigns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from models.animagine import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS
from models.buckets import DEFAULT_BUCKET, parse_bucket
from models.samplers import DEFAULT_SAMPLER, canonical_sampler
from models.settings import Settings
from models.status import Priority

MAX_SEED = 2**32 - 1
RANDOM_SEED = -1  # resolved to a concrete random seed at submission


class SeedRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]
    count: Annotated[StrictInt, Field(ge=1)]

    def expand(self) -> list[int]:
        if self.start + self.count - 1 > MAX_SEED:
            raise ValueError(f"seeds run past the largest seed {MAX_SEED}")
        return list(range(self.start, self.start + self.count))


SeedValue = Annotated[StrictInt, Field(ge=RANDOM_SEED, le=MAX_SEED)]
Label = Annotated[StrictStr, Field(max_length=200)]


class JobSpec(BaseModel):
    """A prompt grid: every prompt × bucket × seed is one image (a *cell*)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    prompts: Annotated[list[StrictStr], Field(min_length=1)]
    negative_prompt: StrictStr | None = None
    quality_tags: StrictBool = True
    buckets: Annotated[list[StrictStr], Field(min_length=1)] = Field(
        default_factory=lambda: [DEFAULT_BUCKET]
    )
    seeds: Annotated[list[SeedValue], Field(min_length=1)] | SeedRange = Field(
        default_factory=lambda: [RANDOM_SEED]
    )
    steps: Annotated[StrictInt, Field(ge=1)] = DEFAULT_STEPS
    guidance_scale: Annotated[StrictFloat, Field(ge=0.0, le=30.0)] = DEFAULT_GUIDANCE_SCALE
    sampler: StrictStr = DEFAULT_SAMPLER
    model: StrictStr | None = None
    priority: Priority = Priority.NORMAL
    name: Annotated[StrictStr, Field(max_length=200)] | None = None
    labels: Annotated[dict[Label, Label], Field(max_length=50)] = Field(default_factory=dict)

    @field_validator("prompts")
    @classmethod
    def _prompts_not_blank(cls, prompts: list[str]) -> list[str]:
        for i, prompt in enumerate(prompts):
            if not prompt.strip():
                raise ValueError(f"prompt {i} is empty")
        return prompts

    @field_validator("buckets")
    @classmethod
    def _canonical_buckets(cls, buckets: list[str]) -> list[str]:
        names = [parse_bucket(b).name for b in buckets]
        if len(set(names)) != len(names):
            raise ValueError("buckets are repeated")
        return names

    @field_validator("sampler")
    @classmethod
    def _canonical_sampler(cls, sampler: str) -> str:
        return canonical_sampler(sampler)

    @field_validator("guidance_scale")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def seed_list(self) -> list[int]:
        return self.seeds.expand() if isinstance(self.seeds, SeedRange) else list(self.seeds)

    def cell_count(self) -> int:
        seeds = self.seeds.count if isinstance(self.seeds, SeedRange) else len(self.seeds)
        return len(self.prompts) * len(self.buckets) * seeds


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class SpecError(ValueError):
    """A spec that is well-typed but breaks a rule; carries every offending field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))


def check_limits(spec: JobSpec, settings: Settings, *, prefix: str = "") -> None:
    """Raise ``SpecError`` naming each field that exceeds the operator's limits."""
    errors: list[FieldError] = []

    def add(field: str, reason: str) -> None:
        errors.append(FieldError(prefix + field, reason))

    if len(spec.prompts) > settings.max_prompts:
        add("prompts", f"{len(spec.prompts)} prompts; the limit is {settings.max_prompts}")
    for i, prompt in enumerate(spec.prompts):
        if len(prompt) > settings.max_prompt_chars:
            add(
                f"prompts.{i}",
                f"{len(prompt)} characters; the limit is {settings.max_prompt_chars}",
            )
    if spec.negative_prompt and len(spec.negative_prompt) > settings.max_prompt_chars:
        add("negative_prompt", f"longer than {settings.max_prompt_chars} characters")
    seed_count = spec.seeds.count if isinstance(spec.seeds, SeedRange) else len(spec.seeds)
    if seed_count > settings.max_seeds:
        add("seeds", f"{seed_count} seeds; the limit is {settings.max_seeds}")
    elif isinstance(spec.seeds, SeedRange) and spec.seeds.start + spec.seeds.count - 1 > MAX_SEED:
        add("seeds", f"the range runs past the largest seed {MAX_SEED}")
    if spec.steps > settings.max_steps:
        add("steps", f"{spec.steps} steps; the limit is {settings.max_steps}")
    cells = spec.cell_count()
    if cells > settings.max_grid_cells:
        add("prompts", f"the grid has {cells} cells; the limit is {settings.max_grid_cells}")
    model = spec.model or settings.model
    if model not in settings.models:
        add(
            "model",
            f"unknown model {model!r}; enabled models: {', '.join(sorted(settings.models))}",
        )
    if errors:
        raise SpecError(errors)
