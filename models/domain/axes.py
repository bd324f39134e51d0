"""Grid axes: the value types of the list-or-scalar axes, their order, and the GPU estimate.

A grid is the product of its axes, outermost first (``AXIS_ORDER``):

    prompts → buckets → seeds → prompt_replace → sampler → steps → guidance_scale

The first three are the original grid, so a spec that gives one value for each
extra axis keeps its cell order. The extra axes nest innermost: the variants of
one (prompt, bucket, seed) are neighbours and share the seed, which is what a
sampler or CFG comparison wants.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Annotated, Any, Final, Protocol, TypeVar

from pydantic import AfterValidator, Discriminator, Field, StrictFloat, StrictInt, StrictStr, Tag

from models.domain.samplers import canonical_sampler
from models.domain.text import check_text

AXIS_ORDER: Final = (
    "prompts",
    "buckets",
    "seeds",
    "prompt_replace",
    "sampler",
    "steps",
    "guidance_scale",
)

T = TypeVar("T", bound=Hashable)


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


StepsValue = Annotated[StrictInt, Field(ge=1)]
GuidanceValue = Annotated[StrictFloat, Field(ge=0.0, le=30.0), AfterValidator(_finite)]
SamplerValue = Annotated[StrictStr, AfterValidator(canonical_sampler)]

StepsAxis = Annotated[
    Annotated[StepsValue, Tag("Value")]
    | Annotated[list[StepsValue], Field(min_length=1), AfterValidator(distinct), Tag("List")],
    Discriminator(_kind),
]
GuidanceAxis = Annotated[
    Annotated[GuidanceValue, Tag("Value")]
    | Annotated[list[GuidanceValue], Field(min_length=1), AfterValidator(distinct), Tag("List")],
    Discriminator(_kind),
]
SamplerAxis = Annotated[
    Annotated[SamplerValue, Tag("Value")]
    | Annotated[list[SamplerValue], Field(min_length=1), AfterValidator(distinct), Tag("List")],
    Discriminator(_kind),
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


# --- GPU time estimate -------------------------------------------------------------------
#
# Seconds per image at 28 steps with CFG on one H100, bf16, for a well-tuned diffusers
# pipeline. Derivation (shared/NOTES.md, FLOPs counted on the meta device): a 1024² image
# at 28 steps with CFG is 389.3 TFLOP (28 UNet forwards at batch 2, 13.52 TFLOP each, plus
# a 10.47 TFLOP VAE decode); 832×1216 is 374.3 TFLOP. At 50% of the H100's ~790 TFLOP/s
# dense bf16 (395 TFLOP/s) that is 0.986 s and 0.948 s. The other buckets scale with their
# pixel count (within 0.4% of the counted 832×1216 figure). The published anchors agree:
# MLPerf's TensorRT H100 does ~0.85 s at 28 steps, an A100 with diffusers ~2.3 s.
SECONDS_PER_IMAGE_28_STEPS: Final[dict[str, float]] = {
    "1024x1024": 0.986,
    "1152x896": 0.970,
    "896x1152": 0.970,
    "1216x832": 0.948,
    "832x1216": 0.948,
    "1344x768": 0.970,
    "768x1344": 0.970,
    "1536x640": 0.924,
    "640x1536": 0.924,
}
REFERENCE_STEPS: Final = 28
UNET_TFLOP_PER_STEP: Final = 13.52  # 1024², batch 2 (CFG)
VAE_DECODE_TFLOP: Final = 10.47  # 1024²
_REFERENCE_TFLOP: Final = REFERENCE_STEPS * UNET_TFLOP_PER_STEP + VAE_DECODE_TFLOP


class CellCost(Protocol):
    """What the estimate reads of a cell (``models.domain.grid.Cell`` has it)."""

    @property
    def bucket(self) -> str: ...
    @property
    def steps(self) -> int: ...
    @property
    def guidance_scale(self) -> float: ...
    @property
    def hires_scale(self) -> float | None: ...
    @property
    def hires_strength(self) -> float | None: ...
    @property
    def hires_steps(self) -> int | None: ...


def image_seconds(cell: CellCost) -> float:
    """Estimated H100 seconds for one cell.

    The UNet share of the bucket's time scales with the steps (halved without CFG,
    ``guidance_scale <= 1``); the VAE decode is paid once, at the output size. A
    hi-res pass adds its steps at ``scale²`` the pixels (attention grows faster than
    that, so it is an underestimate for large scales).
    """
    seconds_28 = SECONDS_PER_IMAGE_28_STEPS[cell.bucket]
    per_tflop = seconds_28 / _REFERENCE_TFLOP  # seconds per TFLOP at this bucket's size
    unet = UNET_TFLOP_PER_STEP * (1.0 if cell.guidance_scale > 1.0 else 0.5)
    tflop = cell.steps * unet
    if cell.hires_scale is None:
        tflop += VAE_DECODE_TFLOP
    else:
        area = cell.hires_scale**2
        hires_steps = cell.hires_steps or cell.steps  # A1111: the steps the pass runs
        tflop += area * (hires_steps * unet + VAE_DECODE_TFLOP)
    return tflop * per_tflop


def estimate_gpu_seconds(cells: Iterable[CellCost]) -> float:
    return round(sum(image_seconds(c) for c in cells), 2)
