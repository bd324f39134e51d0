"""Refining a job's cells into a child job, through the one submit path.

1. the request's own rules, then the selection from the parent's visible cells (a hi-res
   refinement needs their images: ``NotRendered``, the API's 409);
2. each selected cell as a one-cell grid spec (models/domain/refine.py), checked by the
   ``Submitter`` like any spec: the tenant's content policy, limits after expansion,
   allowed ratings; the child's cells are those grids' cells, naming their parent;
3. the child's cell count against the grid limit, then ``Submitter.create``: idempotent
   replays, the tenant's quotas (``QuotaExceeded``: a 429), the job, cells and shards;
4. the parent lists the child (its row is locked until the commit), commit, publish.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from models.db.jobs import CreatedJob, MadeCells
from models.db.refine import link_child, lock_parent, parent_cells
from models.db.tables import Job
from models.domain.cells import Cell
from models.domain.grid import ResolvedGrid, expand
from models.domain.policy import ContentPolicy
from models.domain.refine import (
    ParentCell,
    RefineIn,
    cell_spec,
    check_rendered,
    check_request,
    child_cells,
    child_grid,
    select,
)
from models.domain.spec import MAX_SEED, FieldError, JobSpec, SpecError
from models.service.submit import JobRequest, Submitter


@dataclass(frozen=True)
class Planned:
    """A child job ready to create: its settings' spec and its cells."""

    spec: JobSpec
    made: MadeCells
    chunks: dict[str, int]  # each cell text's 75-token chunks (the dry run's estimate)


def plan(
    submitter: Submitter,
    session: Session,
    *,
    parent: Job,
    request: RefineIn,
    policy: ContentPolicy,
) -> Planned:
    """Steps 1-2 and the grid limit: the child's cells, checked (SpecError names fields)."""
    check_request(request)
    chosen = select(parent_cells(session, job_id=parent.id), request)
    check_rendered(chosen, request)
    library = submitter.settings.prompt_library
    limit = submitter.settings.max_grid_cells
    each = cell_spec(chosen[0].cell, request, model=parent.model).cell_count(library)
    if each * len(chosen) > limit:  # before any cell is checked: each has as many
        reason = f"the child has {each * len(chosen)} cells; the limit is {limit}"
        raise SpecError([FieldError("cells", reason)])
    groups: list[tuple[ParentCell, list[Cell]]] = []
    specs: list[JobSpec] = []
    errors: list[FieldError] = []
    chunks: dict[str, int] = {}
    # Cells that differ only in their seed check the same texts and settings: once.
    checked_grids: dict[str, ResolvedGrid] = {}
    # more_like: the same new seeds for every selected cell (its sheet's rows line up).
    new_seeds = [secrets.randbelow(MAX_SEED + 1) for _ in range(request.more_like or 0)]
    for p in chosen:
        try:
            spec = cell_spec(p.cell, request, model=parent.model)
            key = spec.model_dump_json(exclude={"seeds"})
            if key not in checked_grids:
                checked = submitter.check(spec, policy=policy)
                checked_grids[key] = checked.grid
                chunks.update(checked.chunks)
        except SpecError as exc:
            errors.extend(_from_cell(e, p.cell.index) for e in exc.errors)
            continue
        specs.append(spec)
        grid = replace(checked_grids[key], seeds=new_seeds or spec.seed_list())
        groups.append((p, expand(grid, library)))
    if errors:
        raise SpecError(errors[:20])
    parent_id = str(parent.id)
    cells = child_cells(
        parent_id,
        groups,
        reuse_base=request.reuses_base,
        keep_loras="loras" not in request.set and "lora_sets" not in request.set,
    )
    stored: dict[str, Any] = {
        "parent_job_id": parent_id,
        "refine": request.model_dump(mode="json", exclude_none=True),
        # Titles of its sheets and page sections: one per parent cell, named.
        "prompts": [f"cell {p.cell.index}: {p.cell.prompt}" for p, _ in groups],
    }
    layout = child_grid(groups, model=parent.model, parent_job_id=parent_id)
    return Planned(specs[0], MadeCells(cells, layout, stored, parent.id), chunks)


def _from_cell(error: FieldError, index: int) -> FieldError:
    """A one-cell spec's error, named as the request names it, with the parent cell."""
    field = error.field if error.field.startswith("set.") else _request_field(error.field)
    return FieldError(field, f"{error.reason} (refining cell {index})")


def _request_field(field: str) -> str:
    top = field.split(".")[0]
    return {"hires": "hires", "seeds": "more_like"}.get(top, "cells")


def create_child(
    submitter: Submitter,
    session: Session,
    *,
    tenant_id: uuid.UUID,
    parent: Job,
    request: RefineIn,
    idempotency_key: str | None = None,
) -> CreatedJob:
    """Steps 1-4 but the commit and the publish: in the caller's transaction (a campaign
    run's refinement is made in the scheduler's)."""
    policy = submitter.policy(session, tenant_id)
    planned = plan(submitter, session, parent=parent, request=request, policy=policy)
    lock_parent(session, job=parent)
    job_request = JobRequest(planned.spec, idempotency_key, made=planned.made)
    [created] = submitter.create(
        session, tenant_id=tenant_id, requests=[job_request], policy=policy
    )
    if created.created:
        link_child(session, parent=parent, child_id=created.job.id)
    return created


def refine(
    submitter: Submitter,
    session: Session,
    *,
    tenant_id: uuid.UUID,
    parent: Job,
    request: RefineIn,
    idempotency_key: str | None = None,
) -> CreatedJob:
    """Steps 1-4: the child job, committed and published (a replay: the earlier one)."""
    try:
        created = create_child(
            submitter,
            session,
            tenant_id=tenant_id,
            parent=parent,
            request=request,
            idempotency_key=idempotency_key,
        )
        session.commit()
    except Exception:
        session.rollback()
        raise
    submitter.publish([created])
    return created
