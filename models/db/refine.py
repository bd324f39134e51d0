"""A refinement's reads and writes: a parent's cells with their state and score, the
parent images a child's hi-res pass starts from, and the parent's list of children."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.cell_rows import CELL_COLUMNS, cell_of
from models.db.holds import VISIBLE
from models.db.tables import Item, Job
from models.domain.refine import ParentCell


def parent_cells(session: Session, *, job_id: uuid.UUID) -> list[ParentCell]:
    """The job's cells a tenant sees (screening's held cells are not), in index order."""
    rows = session.execute(
        select(*CELL_COLUMNS, Item.status, Item.sha256, Item.score)
        .where(Item.job_id == job_id, VISIBLE)
        .order_by(Item.index)
    )
    return [ParentCell(cell_of(row._mapping), row.status, row.sha256, row.score) for row in rows]


def base_keys(
    session: Session, *, parent_job_id: str, indexes: list[int]
) -> dict[int, tuple[str | None, str | None]]:
    """(storage key, sha256) of each parent cell a child's hi-res pass starts from."""
    rows = session.execute(
        select(Item.index, Item.key, Item.sha256).where(
            Item.job_id == uuid.UUID(parent_job_id), Item.index.in_(indexes)
        )
    )
    return {index: (key, sha256) for index, key, sha256 in rows}


def lock_parent(session: Session, *, job: Job) -> None:
    """Hold the parent's row until the child is committed: children are appended one
    refinement at a time."""
    session.refresh(job, with_for_update=True)


def link_child(session: Session, *, parent: Job, child_id: uuid.UUID) -> None:
    """Name the child in the parent's view, and bump its version (its ETag changes)."""
    parent.children = [*(parent.children or []), str(child_id)]
    parent.version += 1
