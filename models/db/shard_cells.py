"""Reading a claimed shard's cells: what the renderer needs, without the ORM."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db.claims import ClaimedShard
from models.db.tables import Item
from models.domain.status import CellStatus


@dataclass(frozen=True, slots=True)
class QueuedCell:
    """What rendering a cell needs, read without the ORM (a worker reads a shard's
    cells between two renders: loading full ``Item`` objects cost ~5% of its CPU)."""

    index: int
    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    steps: int
    guidance_scale: float
    sampler: str
    emphasis: str | None
    hires_scale: float | None
    hires_strength: float | None
    hires_steps: int | None


_CELL_COLUMNS = (
    Item.index,
    Item.prompt,
    Item.negative_prompt,
    Item.width,
    Item.height,
    Item.seed,
    Item.steps,
    Item.guidance_scale,
    Item.sampler,
    Item.emphasis,
    Item.hires_scale,
    Item.hires_strength,
    Item.hires_steps,
)


def shard_cells(session: Session, *, shard: ClaimedShard) -> list[QueuedCell]:
    """The shard's cells that still need an image, in index order."""
    rows = session.execute(
        select(*_CELL_COLUMNS)
        .where(
            Item.job_id == shard.job_id,
            Item.shard_index == shard.index,
            Item.status == CellStatus.QUEUED,
        )
        .order_by(Item.index)
    )
    return [QueuedCell(**row._mapping) for row in rows]
