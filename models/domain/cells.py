"""A cell's render fields, declared once: every other list of them is derived from here.

A cell is one image of a grid. ``RenderParams`` holds what rendering it needs and what
its PNG says (A1111's infotext); ``Cell`` adds where it sits in its grid. What lists a
cell's fields reads them from these dataclasses (``RENDER_FIELDS``, ``CELL_FIELDS``):

- the items table's COPY columns and text, and SQLite's rows (models/db/cell_rows.py);
- what a worker reads of a shard's cells (models/db/cell_rows.py);
- the render batch: fields that do not vary inside a shard come from its first cell
  (worker/renderer.py);
- the PNG's infotext: every field with an ``infotext`` label (models/domain/infotext.py);
- the manifest's cell entry and the images API item (``cell_values``, api/schemas.py).

Adding a render field (a new grid axis, say) touches: a field here, the spec field that
sets it (models/domain/spec.py, and ``AXIS_ORDER`` in models/domain/axes.py if it is an
axis), the items column (models/db/tables.py) with its migration, and the renderer where
the pipeline uses it. tests/unit/test_new_axis.py does exactly that on a copy of the
source tree and follows the field from the spec to the PNG's metadata.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from models.domain.loras import LoraUse, from_plain, plain
from models.domain.samplers import a1111_name, canonical_sampler

_KEY: Final = "farm"  # the dataclass field metadata key these helpers use


def _number(value: float) -> str:
    """A1111 writes 7.0 as ``7`` and 5.5 as ``5.5``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class FieldInfo:
    """What the rest of the farm needs to know about one render field."""

    # Cells of one shard may differ in it (one pipeline call still renders them all).
    varies_in_shard: bool = False
    # The field's key in A1111's infotext, None when it is not written there (or is
    # written by infotext.py itself: prompt, negative prompt, size).
    infotext: str | None = None
    write: Callable[[Any], str] = str
    read: Callable[[str], Any] = str
    # Written even when it has its default (a receipt a reader must not have to guess).
    write_default: bool = False
    # Its JSON form and back, for a value that is not one already (stored rows, manifest).
    to_json: Callable[[Any], Any] | None = None
    from_json: Callable[[Any], Any] | None = None


def render_field(
    default: Any = dataclasses.MISSING,
    *,
    varies_in_shard: bool = False,
    infotext: str | None = None,
    write: Callable[[Any], str] = str,
    read: Callable[[str], Any] = str,
    write_default: bool = False,
    to_json: Callable[[Any], Any] | None = None,
    from_json: Callable[[Any], Any] | None = None,
) -> Any:
    info = FieldInfo(varies_in_shard, infotext, write, read, write_default, to_json, from_json)
    return field(default=default, metadata={_KEY: info})


EMPHASIS_NAMES: Final = {"original": "Original", "no_norm": "No norm"}  # A1111's names
_EMPHASIS_IDS: Final = {name: key for key, name in EMPHASIS_NAMES.items()}


def _emphasis_id(name: str) -> str:
    return _EMPHASIS_IDS.get(name, "original")


@dataclass(slots=True, kw_only=True)
class RenderParams:
    """Everything one image is rendered from, but the model (a job's, one per shard).

    Declaration order is the order of A1111's infotext fields.
    """

    # The texts the cell encodes: styles, wildcards and Prompt S/R already applied
    # (models/domain/prompt_pipeline.py); prompt editing is still in them, as text.
    prompt: str = render_field(varies_in_shard=True)
    negative_prompt: str = render_field(varies_in_shard=True)
    steps: int = render_field(infotext="Steps", read=int)
    sampler: str = render_field(infotext="Sampler", write=a1111_name, read=canonical_sampler)
    guidance_scale: float = render_field(infotext="CFG scale", write=_number, read=float)
    seed: int = render_field(varies_in_shard=True, infotext="Seed", read=int)
    width: int = render_field()
    height: int = render_field()
    # The cell's Prompt S/R value (already applied to prompt and negative prompt).
    prompt_replace: str | None = render_field(None, varies_in_shard=True)
    emphasis: str = render_field(
        "original", infotext="Emphasis", write=EMPHASIS_NAMES.__getitem__, read=_emphasis_id
    )
    # Hi-res fix: None when the cell has none. A1111 calls the strength "Denoising strength".
    hires_strength: float | None = render_field(
        None, infotext="Denoising strength", write=_number, read=float
    )
    hires_scale: float | None = render_field(
        None, infotext="Hires upscale", write=_number, read=float
    )
    hires_steps: int | None = render_field(None, infotext="Hires steps", read=int)
    # The numerics a GPU renders with (worker/gpu_options.py: exact, standard, fast).
    quality_tier: str = render_field("standard", infotext="Quality tier", write_default=True)
    # The cell's style (already applied to the texts: A1111's infotext has the expanded
    # prompt, no "Styles array") and its combinatorial wildcard values, as a JSON object.
    style: str | None = render_field(None, varies_in_shard=True)
    wildcard_values: str | None = render_field(None, varies_in_shard=True)
    # LoRA adapters (models/domain/loras.py): the set the cell renders with (the job's
    # ``loras``, its ``lora_sets`` value and its prompt's <lora:...> tags, by name, each
    # with its file's hash), and its ``lora_sets`` axis value (None: no such axis).
    # Shared in a shard: one set of adapters is active per pipeline call. The infotext
    # writes them A1111's way (infotext.py: tags in the prompt, "Lora hashes").
    loras: tuple[LoraUse, ...] = render_field((), to_json=plain, from_json=from_plain)
    lora_sets: tuple[LoraUse, ...] | None = render_field(None, to_json=plain, from_json=from_plain)
    # A refinement's cell (models/domain/refine.py): the parent cell it came from, and
    # the sha256 of the parent's PNG when its hi-res pass starts from that image instead
    # of a base pass (None: the base pass is rendered). infotext.py writes them as
    # "Parent: <job>#<index>" and "Hires base: <sha256>".
    parent_job_id: str | None = render_field(None, varies_in_shard=True)
    parent_index: int | None = render_field(None, varies_in_shard=True)
    base_sha256: str | None = render_field(None, varies_in_shard=True)


@dataclass(slots=True, kw_only=True)
class Cell(RenderParams):
    """One cell of a grid: its render fields and its place in the grid."""

    index: int
    prompt_index: int
    bucket: str  # canonical "WxH": the bucket's name, width x height


def _info(f: dataclasses.Field[Any]) -> FieldInfo:
    info: FieldInfo = f.metadata[_KEY]
    return info


RENDER_FIELDS: Final = tuple(f.name for f in dataclasses.fields(RenderParams))
CELL_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Cell))  # render fields first
FIELD_INFO: Final = {f.name: _info(f) for f in dataclasses.fields(RenderParams)}
# The fields whose values are not JSON as they are (stored as JSON, read back with these).
JSON_FIELDS: Final = tuple(n for n in RENDER_FIELDS if FIELD_INFO[n].from_json is not None)
# The fields every cell of one shard shares: one pipeline call renders them.
SHARED_FIELDS: Final = tuple(n for n in RENDER_FIELDS if not FIELD_INFO[n].varies_in_shard)
DEFAULTS: Final = {
    f.name: f.default
    for f in dataclasses.fields(RenderParams)
    if f.default is not dataclasses.MISSING
}

_shared_values = operator.attrgetter(*SHARED_FIELDS)
_render_values = operator.attrgetter(*RENDER_FIELDS)


def render_key(params: RenderParams) -> tuple[Any, ...]:
    """Cells with equal keys can share one pipeline call."""
    key: tuple[Any, ...] = _shared_values(params)
    return key


def render_params(cell: RenderParams) -> RenderParams:
    """A cell's render fields alone (a ``Cell`` carries its grid position too)."""
    return RenderParams(**dict(zip(RENDER_FIELDS, _render_values(cell), strict=True)))


def json_value(name: str, value: Any) -> Any:
    """A field's value as JSON holds it (a LoRA set: a list of objects)."""
    info = FIELD_INFO.get(name)
    return info.to_json(value) if info is not None and info.to_json is not None else value


def from_json_value(name: str, value: Any) -> Any:
    info = FIELD_INFO.get(name)
    return info.from_json(value) if info is not None and info.from_json is not None else value


def cell_values(cell: Cell) -> dict[str, Any]:
    """A cell's fields by name, in declaration order, as JSON holds them (the manifest,
    the images API)."""
    return {name: json_value(name, getattr(cell, name)) for name in CELL_FIELDS}


def viewer_fields() -> list[tuple[str, str]]:
    """(field, label) of a cell's render fields as a viewer lists them (the job page, the
    gallery): A1111's names where it has one, and width x height as one "size"."""
    fields: list[tuple[str, str]] = []
    for name in RENDER_FIELDS:
        if name == "width":
            fields.append(("bucket", "size"))
        elif name != "height":
            fields.append((name, FIELD_INFO[name].infotext or name.replace("_", " ")))
    return fields
