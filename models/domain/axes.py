"""Grid axes: the value types of the list-or-scalar axes, and the marker that makes one.

A grid is the product of its axes, outermost first (``models.domain.spec.AXIS_ORDER``):

    prompts → buckets → seeds → prompt_replace → the setting axes, in the spec's order
    (sampler → steps → guidance_scale)

The first three are the original grid, so a spec that gives one value for each
extra axis keeps its cell order. The extra axes nest innermost: the variants of
one (prompt, bucket, seed) are neighbours and share the seed, which is what a
sampler or CFG comparison wants.

A *setting axis* is a spec field whose type carries ``GRID_AXIS``: a value, or a list of
distinct values, each setting the cell's render field of the same name
(models/domain/cells.py). The spec finds them by that marker; nothing else lists them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Annotated, Any, Final, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
)

from models.domain.loras import LORA_NAME, LORA_WEIGHT_LIMIT, MAX_LORAS_PER_SET, LoraSet, LoraUse
from models.domain.samplers import canonical_sampler
from models.domain.text import check_text

T = TypeVar("T", bound=Hashable)


class GridAxis:
    """The marker of a setting axis (see the module docstring)."""

    def __repr__(self) -> str:
        return "GRID_AXIS"


GRID_AXIS: Final = GridAxis()


def _kind(value: Any) -> str:
    # Capitalised tags: the API's error names drop them (``sampler.2``, not ``sampler.List.2``).
    return "List" if isinstance(value, list) else "Value"


def distinct(values: list[T]) -> list[T]:
    seen: set[T] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ValueError(f"value {i} ({value!r}) is repeated")
        seen.add(value)
    return values


def as_list(value: T | list[T]) -> list[T]:
    return list(value) if isinstance(value, list) else [value]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


StepsValue = Annotated[StrictInt, Field(ge=1, le=10_000)]  # the operator's limit is lower
GuidanceValue = Annotated[StrictFloat, Field(ge=0.0, le=30.0), AfterValidator(_finite)]
SamplerValue = Annotated[StrictStr, AfterValidator(canonical_sampler)]

StepsAxis = Annotated[
    Annotated[StepsValue, Tag("Value")]
    | Annotated[list[StepsValue], Field(min_length=1), AfterValidator(distinct), Tag("List")],
    Discriminator(_kind),
    GRID_AXIS,
]
GuidanceAxis = Annotated[
    Annotated[GuidanceValue, Tag("Value")]
    | Annotated[list[GuidanceValue], Field(min_length=1), AfterValidator(distinct), Tag("List")],
    Discriminator(_kind),
    GRID_AXIS,
]
SamplerAxis = Annotated[
    Annotated[SamplerValue, Tag("Value")]
    | Annotated[list[SamplerValue], Field(min_length=1), AfterValidator(distinct), Tag("List")],
    Discriminator(_kind),
    GRID_AXIS,
]
# The numerics a job renders with (worker/gpu_options.py has what each tier switches on).
QualityTier = Literal["exact", "standard", "fast"]
QUALITY_TIERS: Final = get_args(QualityTier)
QualityTierAxis = Annotated[
    Annotated[QualityTier, Tag("Value")]
    | Annotated[list[QualityTier], Field(min_length=1), AfterValidator(distinct), Tag("List")],
    Discriminator(_kind),
    GRID_AXIS,
]
# A style's name (``models.domain.styles``); which names exist is the operator's, checked by
# ``check_limits``. A list is an axis: each cell takes one style.
StyleName = Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(check_text)]
StyleAxis = Annotated[
    Annotated[StyleName, Tag("Value")]
    | Annotated[
        list[StyleName], Field(min_length=1, max_length=100), AfterValidator(distinct), Tag("List")
    ],
    Discriminator(_kind),
    GRID_AXIS,
]
# Wildcard lists whose every value is a grid axis (Dynamic Prompts' combinatorial mode).
WildcardName = Annotated[StrictStr, Field(pattern=r"^[\w\-/.]+$", max_length=200)]
WildcardAxes = Annotated[
    list[WildcardName], Field(min_length=1, max_length=8), AfterValidator(distinct)
]


class LoraSpec(BaseModel):
    """A LoRA a request names: one the operator enabled (``GET /v1/loras``), and its weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[StrictStr, Field(pattern=LORA_NAME, max_length=200)]
    weight: Annotated[
        StrictFloat, Field(ge=-LORA_WEIGHT_LIMIT, le=LORA_WEIGHT_LIMIT), AfterValidator(_finite)
    ] = 1.0

    def use(self) -> LoraUse:
        return LoraUse(self.name, self.weight)


def _distinct_names(loras: list[LoraSpec]) -> list[LoraSpec]:
    distinct([lora.name for lora in loras])
    return loras


def lora_set(loras: list[LoraSpec]) -> LoraSet:
    """A spec's set as a cell holds it: sorted by name."""
    return tuple(sorted((lora.use() for lora in loras), key=lambda u: u.name))


def _distinct_sets(sets: list[list[LoraSpec]]) -> list[list[LoraSpec]]:
    distinct([lora_set(s) for s in sets])
    return sets


LoraList = Annotated[
    list[LoraSpec], Field(max_length=MAX_LORAS_PER_SET), AfterValidator(_distinct_names)
]
# Each value a set of LoRAs (``[]``: none); every cell takes one (models/domain/loras.py).
LoraSetsAxis = Annotated[
    list[LoraList], Field(min_length=1, max_length=100), AfterValidator(_distinct_sets)
]
# A1111's "Prompt S/R": the first value is searched for, every value replaces it.
PromptReplaceAxis = Annotated[
    list[Annotated[StrictStr, Field(min_length=1, max_length=500), AfterValidator(check_text)]],
    Field(min_length=1, max_length=100),
    AfterValidator(distinct),
]


def replace_variants(text: str, values: Sequence[str]) -> list[str]:
    """A1111's Prompt S/R on one text: the first value is the original (no change)."""
    if not values:
        return [text]
    search = values[0]
    return [text if i == 0 else text.replace(search, value) for i, value in enumerate(values)]
