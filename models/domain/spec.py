"""What a client asks for: the grid spec, validated field by field.

Type and value rules live on the model; limits that the operator configures
(grid size, prompt length after expansion, enabled models) are checked by
``models.domain.limits.check_limits`` so that the same spec class serves every door.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from models.domain.animagine import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS
from models.domain.axes import (
    GRID_AXIS,
    GuidanceAxis,
    LoraList,
    LoraSetsAxis,
    PromptReplaceAxis,
    QualityTierAxis,
    SamplerAxis,
    StepsAxis,
    StyleAxis,
    WildcardAxes,
    as_list,
    lora_set,
)
from models.domain.buckets import DEFAULT_BUCKET, parse_bucket
from models.domain.cells import RENDER_FIELDS
from models.domain.prompt_pipeline import PromptLibrary
from models.domain.samplers import DEFAULT_SAMPLER
from models.domain.status import Priority
from models.domain.tags import (
    PromptEntry,
    PromptTags,
    PromptText,
    QualityPosition,
    QualityTagsField,
    entry_is_blank,
)
from models.domain.text import Text
from models.domain.webhook_events import WebhookProgress
from models.domain.webhook_urls import check_url_syntax

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
Label = Annotated[Text, Field(max_length=200)]
# http(s) only; the address rules need settings and are checked by check_limits.
WebhookUrl = Annotated[Text, AfterValidator(check_url_syntax)]
# A1111's emphasis modes: "original" restores each chunk's mean after weighting.
Emphasis = Literal["original", "no_norm"]


class HiresSpec(BaseModel):
    """Hi-res fix: latent upscale by ``scale``, then an img2img pass at ``strength``."""

    model_config = ConfigDict(extra="forbid")

    scale: Annotated[StrictFloat, Field(ge=1.0, le=2.0)] = 1.5
    strength: Annotated[StrictFloat, Field(gt=0.0, le=1.0)] = 0.55
    # Steps the second pass runs (A1111's "Hires steps"); null: the cell's steps.
    steps: Annotated[StrictInt, Field(ge=1, le=10_000)] | None = None


class JobSpec(BaseModel):
    """A prompt grid: every combination of its axes is one image (a *cell*).

    Axes, outermost first: prompts, buckets, seeds, prompt_replace, the combinatorial
    wildcards, style, lora_sets, sampler, steps, guidance_scale, quality_tier (see
    ``models.domain.axes``).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    prompts: Annotated[list[PromptEntry], Field(min_length=1)]
    negative_prompt: PromptText | None = None
    quality_tags: QualityTagsField = True  # true = "standard", false = "none"
    quality_tags_position: QualityPosition = "prepend"
    buckets: Annotated[list[StrictStr], Field(min_length=1)] = Field(
        default_factory=lambda: [DEFAULT_BUCKET]
    )
    seeds: Annotated[list[SeedValue], Field(min_length=1)] | SeedRange = Field(
        default_factory=lambda: [RANDOM_SEED]
    )
    # The setting axes, in grid order (outermost first): the order is part of the
    # contract, since it fixes every cell's index.
    style: Annotated[StyleAxis | None, GRID_AXIS] = None  # a name (models/domain/styles.py)
    # LoRA sets, one per value ([] = none); ``loras`` applies to every cell. Names are
    # the operator's (FARM_LORAS); <lora:name:weight> in a prompt works too.
    lora_sets: Annotated[LoraSetsAxis | None, GRID_AXIS] = None
    sampler: SamplerAxis = DEFAULT_SAMPLER
    steps: StepsAxis = DEFAULT_STEPS
    guidance_scale: GuidanceAxis = DEFAULT_GUIDANCE_SCALE
    # exact (fp32), standard (bf16 + compile), fast (FP8 where the GPU has it); the
    # operator says which the farm serves (FARM_QUALITY_TIERS).
    quality_tier: QualityTierAxis = "standard"
    prompt_replace: PromptReplaceAxis | None = None
    # Wildcard lists that are axes: every value once (the others resolve at random).
    wildcard_axes: WildcardAxes | None = None
    loras: LoraList = Field(default_factory=list)
    emphasis: Emphasis = "original"
    hires: HiresSpec | None = None
    model: StrictStr | None = None
    priority: Priority = Priority.NORMAL
    name: Annotated[Text, Field(max_length=200)] | None = None
    labels: Annotated[dict[Label, Label], Field(max_length=50)] = Field(default_factory=dict)
    webhook_url: WebhookUrl | None = None  # job.completed is POSTed here, signed
    webhook_progress: WebhookProgress | None = None  # and job.progress this often
    # Business controls (docs/OPERATIONS.md): seconds the job's files are kept once it
    # finishes (within the tenant's maximum), and the GPU seconds it may spend.
    retention_s: Annotated[StrictInt, Field(ge=1, le=10 * 365 * 86400)] | None = None
    max_gpu_seconds: Annotated[StrictFloat, Field(gt=0, le=1e9)] | None = None

    @field_validator("prompts")
    @classmethod
    def _prompts_not_blank(cls, prompts: list[str | PromptTags]) -> list[str | PromptTags]:
        for i, prompt in enumerate(prompts):
            if entry_is_blank(prompt):
                raise ValueError(f"prompt {i} is empty")
        return prompts

    @field_validator("buckets")
    @classmethod
    def _canonical_buckets(cls, buckets: list[str]) -> list[str]:
        names = [parse_bucket(b).name for b in buckets]
        if len(set(names)) != len(names):
            raise ValueError("buckets are repeated")
        return names

    def seed_list(self) -> list[int]:
        return self.seeds.expand() if isinstance(self.seeds, SeedRange) else list(self.seeds)

    def step_list(self) -> list[int]:
        return as_list(self.steps)

    def style_list(self) -> list[str]:
        """The styles' names; empty when the job has no style."""
        return [] if self.style is None else as_list(self.style)

    def replace_list(self) -> list[str]:
        """The Prompt S/R values; empty when the axis is not used."""
        return list(self.prompt_replace or [])

    def render_settings(self) -> dict[str, Any]:
        """The cells' render fields this spec sets for the whole job, by field name: a
        value, or a list of values for a setting axis (``SETTING_AXES``)."""
        settings: dict[str, Any] = {name: getattr(self, name) for name in SETTING_AXES}
        settings.update((name, getattr(self, name)) for name in JOB_SETTINGS)
        settings["loras"] = lora_set(self.loras)
        sets = self.lora_sets
        settings["lora_sets"] = None if sets is None else [lora_set(s) for s in sets]
        hires = self.hires
        settings["hires_scale"] = None if hires is None else hires.scale
        settings["hires_strength"] = None if hires is None else hires.strength
        settings["hires_steps"] = None if hires is None else hires.steps
        return settings

    def axis_sizes(self, library: PromptLibrary | None = None) -> dict[str, int]:
        """How many values each axis has, outermost first (``AXIS_ORDER``, with each
        combinatorial wildcard ``__name__`` after ``prompt_replace``). The wildcard axes'
        sizes are the lists' lengths in ``library`` (an unknown list counts one value:
        ``check_limits`` names it); without one, a spec with wildcard axes is an error."""
        seeds = self.seeds.count if isinstance(self.seeds, SeedRange) else len(self.seeds)
        sizes = {
            "prompts": len(self.prompts),
            "buckets": len(self.buckets),
            "seeds": seeds,
            "prompt_replace": max(1, len(self.replace_list())),
        }
        for name in self.wildcard_axes or []:
            if library is None:
                raise ValueError("a spec with wildcard_axes is counted with its prompt library")
            sizes[f"__{name}__"] = max(1, len(library.wildcards.get(name, ())))
        sizes.update((name, len(as_list(getattr(self, name)))) for name in SETTING_AXES)
        return sizes

    def cell_count(self, library: PromptLibrary | None = None) -> int:
        return math.prod(self.axis_sizes(library).values())


# The setting axes, in the spec's order: the fields whose type carries GRID_AXIS.
SETTING_AXES: Final = tuple(
    name for name, info in JobSpec.model_fields.items() if GRID_AXIS in info.metadata
)
AXIS_ORDER: Final = ("prompts", "buckets", "seeds", "prompt_replace", *SETTING_AXES)
# Render fields the spec sets once for every cell (an axis of their own, like the
# negative prompt under Prompt S/R, or nested, like the hi-res fix, are resolved apart).
JOB_SETTINGS: Final = tuple(
    name
    for name in JobSpec.model_fields
    if name in RENDER_FIELDS
    and name not in SETTING_AXES
    and name not in ("negative_prompt", "prompt_replace", "wildcard_values")
)


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class SpecError(ValueError):
    """A spec that is well-typed but breaks a rule; carries every offending field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))
