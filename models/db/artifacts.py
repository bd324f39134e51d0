"""What the job-artifacts listener reads: a job, its settled cells per prompt, the cells
of a contact sheet, every cell for the manifest (``worker/job_artifacts.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.db.holds import HELD, RELEASED, VISIBLE
from models.db.tables import Item, Job
from models.domain.status import CellStatus


@dataclass(frozen=True)
class SheetCell:
    index: int
    status: str
    key: str | None


def find_job(session: Session, *, job_id: uuid.UUID) -> Job | None:
    """The job whatever its tenant: the worker holds ids that came from the database."""
    return session.get(Job, job_id)


def settled_per_prompt(
    session: Session, *, job_id: uuid.UUID, prompts: Collection[int]
) -> dict[int, int]:
    """Cells no longer queued (done, failed or cancelled), per prompt index."""
    return dict(
        session.execute(
            select(Item.prompt_index, func.count())
            .where(
                Item.job_id == job_id,
                Item.prompt_index.in_(prompts),
                Item.status != CellStatus.QUEUED,
            )
            .group_by(Item.prompt_index)
        ).all()
    )


def sheet_cells(
    session: Session, *, job_id: uuid.UUID, prompt: int, variants: int, seeds: int, rows: int
) -> list[SheetCell]:
    """A prompt's cells that its contact sheet shows, in index order: the first variant
    of each (bucket, seed), for the first ``rows`` of its ``seeds`` seeds."""
    found = session.execute(
        select(Item.index, Item.status, Item.key, Item.hold)
        .where(
            Item.job_id == job_id,
            Item.prompt_index == prompt,
            (Item.index % variants) == 0,
            (Item.index // variants % seeds) < rows,
        )
        .order_by(Item.index)
    ).all()
    # A held image is never drawn: its place says "held".
    return [
        SheetCell(index, status, key) if hold in (None, RELEASED) else SheetCell(index, HELD, None)
        for index, status, key, hold in found
    ]


def job_cells(session: Session, *, job_id: uuid.UUID) -> list[Item]:
    """Every cell of a job for its manifest, but those held by screening."""
    return list(session.scalars(select(Item).where(Item.job_id == job_id, VISIBLE)))
