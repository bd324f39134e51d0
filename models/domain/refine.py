"""Refinements: a child job made from cells of a parent job (docs/REFINE.md).

A request selects parent cells (``cells``, a ``where`` filter on any cell field, or the
``top`` k by score) and says what changes (``hires``, ``more_like`` new seeds, ``set``
overrides of grid fields). Each selected cell becomes a one-cell grid spec (its texts as
rendered, its bucket and seed or N new seeds, its settings, the overrides on top) that the
one submit path checks like any spec (limits, policy); the child's cells are those grids'
cells, renumbered, each naming its parent cell. When only the hi-res pass is asked for,
the child reuses the parent's PNG as its base (``Cell.base_sha256``) instead of
rendering the base pass again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from models.domain.buckets import parse_bucket
from models.domain.cells import CELL_FIELDS, Cell
from models.domain.spec import (
    RANDOM_SEED,
    FieldError,
    HiresSpec,
    JobSpec,
    Label,
    SpecError,
)
from models.domain.status import Priority

MAX_SELECTED: Final = 10_000
# Grid fields a refinement may override (an axis value list makes a sweep per cell).
OVERRIDABLE: Final = (
    "sampler",
    "steps",
    "guidance_scale",
    "quality_tier",
    "style",
    "loras",
    "lora_sets",
    "emphasis",
    "negative_prompt",
)
FilterValue = StrictStr | StrictInt | float


class RefineIn(BaseModel):
    """``POST /v1/jobs/{id}/refine``: which cells, and what changes."""

    model_config = ConfigDict(extra="forbid")

    cells: Annotated[list[StrictInt], Field(min_length=1, max_length=MAX_SELECTED)] | None = None
    # Any cell field = value (``{"prompt_index": 2, "bucket": "832x1216"}``), or the same
    # as a query string (``"prompt_index=2&bucket=832x1216"``).
    where: dict[StrictStr, FilterValue] | StrictStr | None = None
    top: Annotated[StrictInt, Field(ge=1, le=MAX_SELECTED)] | None = None
    per_prompt: StrictBool = False  # top k of each prompt, not of the whole job
    hires: HiresSpec | StrictBool | None = None  # true: the hi-res pass's defaults
    more_like: Annotated[StrictInt, Field(ge=1, le=1000)] | None = None
    set: dict[StrictStr, Any] = Field(default_factory=dict)  # grid fields overridden
    name: Annotated[StrictStr, Field(max_length=200)] | None = None
    labels: Annotated[dict[Label, Label], Field(max_length=50)] = Field(default_factory=dict)
    priority: Priority | None = None

    def hires_spec(self) -> HiresSpec | None:
        if self.hires is None or self.hires is False:
            return None
        return HiresSpec() if self.hires is True else self.hires

    @property
    def reuses_base(self) -> bool:
        """Only the hi-res pass changes: the parent's image is the base, not re-rendered."""
        return self.hires_spec() is not None and self.more_like is None and not self.set


@dataclass(frozen=True)
class ParentCell:
    """A parent cell as a refinement reads it: its fields, state and score."""

    cell: Cell
    status: str
    sha256: str | None
    score: float | None


class NotRendered(SpecError):
    """Cells whose image a hi-res refinement needs are not rendered (a 409)."""


def check_request(request: RefineIn) -> None:
    errors: list[FieldError] = []
    if request.cells is None and request.where is None and request.top is None:
        errors.append(FieldError("cells", "select cells: give cells, where or top"))
    if request.cells is not None and request.top is not None:
        errors.append(FieldError("top", "give either cells or top, not both"))
    if request.per_prompt and request.top is None:
        errors.append(FieldError("per_prompt", "per_prompt needs top"))
    if request.hires_spec() is None and request.more_like is None and not request.set:
        errors.append(FieldError("hires", "say what changes: hires, more_like or set"))
    for name in request.set:
        if name not in OVERRIDABLE:
            allowed = ", ".join(OVERRIDABLE)
            errors.append(FieldError(f"set.{name}", f"not a field to override; fields: {allowed}"))
    if errors:
        raise SpecError(errors)


def _filters(where: Mapping[str, FilterValue] | str | None) -> dict[str, Any]:
    """The filter as cell field -> value of the field's type (a bucket canonical)."""
    if where is None:
        return {}
    pairs = parse_qsl(where, keep_blank_values=True) if isinstance(where, str) else where.items()
    types = {name: Cell.__dataclass_fields__[name].type for name in CELL_FIELDS}
    found: dict[str, Any] = {}
    for name, raw in pairs:
        if name not in types:
            raise SpecError([FieldError(f"where.{name}", "not a cell field")])
        kind = str(types[name])
        try:
            if name == "bucket":
                found[name] = parse_bucket(str(raw)).name
            elif kind.startswith("int"):
                found[name] = int(raw)
            elif kind.startswith("float"):
                found[name] = float(raw)
            else:
                found[name] = str(raw)
        except ValueError as exc:
            raise SpecError([FieldError(f"where.{name}", str(exc))]) from None
    return found


def select(parents: Sequence[ParentCell], request: RefineIn) -> list[ParentCell]:
    """The selected parent cells, in the order they are refined (SpecError naming the
    field for an unknown index, a filter that matches nothing, no scored cell)."""
    by_index = {p.cell.index: p for p in parents}
    if request.cells is not None:
        unknown = [i for i in request.cells if i not in by_index]
        if unknown:
            raise SpecError(
                [FieldError("cells", f"no cell {unknown[0]}: the job has {len(parents)} cells")]
            )
        if len(set(request.cells)) != len(request.cells):
            raise SpecError([FieldError("cells", "cells are repeated")])
        chosen = [by_index[i] for i in request.cells]
    else:
        chosen = list(parents)
    filters = _filters(request.where)
    if filters:
        chosen = [p for p in chosen if all(getattr(p.cell, k) == v for k, v in filters.items())]
        if not chosen:
            raise SpecError([FieldError("where", f"no cell matches {filters}")])
    if request.top is not None:
        chosen = _top(chosen, request.top, per_prompt=request.per_prompt)
    return chosen


def _top(cells: list[ParentCell], k: int, *, per_prompt: bool) -> list[ParentCell]:
    scored = [p for p in cells if p.score is not None]
    if not scored:
        raise SpecError([FieldError("top", "no selected cell has a score")])
    scored.sort(key=lambda p: (-(p.score or 0.0), p.cell.index))  # best first, stable
    if not per_prompt:
        return scored[:k]
    taken: dict[int, int] = {}
    best: list[ParentCell] = []
    for p in scored:
        if taken.get(p.cell.prompt_index, 0) < k:
            taken[p.cell.prompt_index] = taken.get(p.cell.prompt_index, 0) + 1
            best.append(p)
    return best


def check_rendered(chosen: Sequence[ParentCell], request: RefineIn) -> None:
    """A hi-res refinement starts from the parent's images: each must be there, and
    must not have had a hi-res pass already."""
    if not request.reuses_base:
        return
    waiting = [p for p in chosen if p.status != "done" or p.sha256 is None]
    if waiting:
        named = ", ".join(f"{p.cell.index} ({p.status})" for p in waiting[:10])
        reason = f"the hi-res pass starts from each cell's image; these have none: {named}"
        raise NotRendered([FieldError("cells", reason)])
    upscaled = [p.cell.index for p in chosen if p.cell.hires_scale is not None]
    if upscaled:
        raise SpecError([FieldError("hires", f"cells {upscaled[:10]} had a hi-res pass already")])


def cell_spec(parent: Cell, request: RefineIn, *, model: str) -> JobSpec:
    """The one-cell grid spec that renders ``parent`` with the request's changes
    (SpecError naming ``set.<field>`` for an override the spec refuses)."""
    hires = request.hires_spec()
    if hires is None and parent.hires_scale is not None and parent.hires_strength is not None:
        hires = HiresSpec(
            scale=parent.hires_scale, strength=parent.hires_strength, steps=parent.hires_steps
        )
    seeds = [RANDOM_SEED] * request.more_like if request.more_like else [parent.seed]
    body: dict[str, Any] = {
        "prompts": [parent.prompt],  # as rendered: tags, style, wildcards, S/R applied
        "negative_prompt": parent.negative_prompt,
        "quality_tags": False,  # already in the text
        "buckets": [parent.bucket],
        "seeds": seeds,
        "sampler": parent.sampler,
        "steps": parent.steps,
        "guidance_scale": parent.guidance_scale,
        "quality_tier": parent.quality_tier,
        "emphasis": parent.emphasis,
        "hires": None if hires is None else hires.model_dump(),
        "model": model,
        "name": request.name,
        "labels": request.labels,
        **({"priority": request.priority} if request.priority is not None else {}),
        **request.set,
    }
    try:
        return JobSpec.model_validate(body)
    except ValidationError as exc:
        errors = [FieldError(_field_name(err["loc"], request), err["msg"]) for err in exc.errors()]
        raise SpecError(errors) from None


def _field_name(loc: tuple[int | str, ...], request: RefineIn) -> str:
    # Pydantic names union members ("list[...]", "Value"); the request names the field.
    name = ".".join(str(p) for p in loc if not ("[" in str(p) or str(p)[:1].isupper()))
    return f"set.{name}" if loc and loc[0] in request.set else name


def child_cells(
    parent_job_id: str,
    groups: Sequence[tuple[ParentCell, list[Cell]]],
    *,
    reuse_base: bool,
    keep_loras: bool,
) -> list[Cell]:
    """The child's cells: each selected parent's expanded cells, renumbered in order,
    naming their parent cell; the parent's informational fields (its style, wildcard
    values, S/R value) and LoRA set (unless overridden) carried over."""
    cells: list[Cell] = []
    for group, (parent, expanded) in enumerate(groups):
        p = parent.cell
        for cell in expanded:
            changes: dict[str, Any] = {
                "index": len(cells),
                "prompt_index": group,  # its contact sheet (``child_grid``)
                "parent_job_id": parent_job_id,
                "parent_index": p.index,
                "base_sha256": parent.sha256 if reuse_base else None,
                "prompt_replace": p.prompt_replace,
                "wildcard_values": p.wildcard_values,
            }
            if cell.style is None:
                changes["style"] = p.style
            if keep_loras:
                changes.update(loras=p.loras, lora_sets=p.lora_sets)
            cells.append(replace(cell, **changes))
    return cells


def child_grid(
    groups: Sequence[tuple[ParentCell, list[Cell]]], *, model: str, parent_job_id: str
) -> dict[str, Any]:
    """The child's ``jobs.grid``: one "prompt" per selected parent cell (a contact sheet
    each: its seeds by its settings), as the worker's layout reads a grid."""
    first = groups[0][1]
    seeds = list(dict.fromkeys(c.seed for c in first))
    return {
        "prompts": [parent.cell.prompt for parent, _ in groups],
        "negative_prompt": first[0].negative_prompt,
        "buckets": [first[0].bucket],
        "seeds": seeds,
        "model": model,
        "parent_job_id": parent_job_id,
        "parent_cells": [parent.cell.index for parent, _ in groups],
        # Each group's own bucket and seeds: its sheet's labels (worker/job_layout.py).
        "group_buckets": [cells[0].bucket for _, cells in groups],
        "group_seeds": [list(dict.fromkeys(c.seed for c in cells)) for _, cells in groups],
    }
