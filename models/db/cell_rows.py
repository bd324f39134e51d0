"""Cells as rows of the items table, both ways; the columns come from the cell schema.

Writing: the COPY columns and text (Postgres) and the rows (SQLite) of a new grid.
Reading: a shard's queued cells for a worker, without the ORM (loading full ``Item``
objects cost ~5% of a worker's CPU), and an ``Item`` as a ``Cell``. Every list of
fields here is ``models.domain.cells.CELL_FIELDS``.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from models.db.copy import copy_field
from models.db.tables import Item
from models.domain.cells import (
    CELL_FIELDS,
    DEFAULTS,
    JSON_FIELDS,
    Cell,
    from_json_value,
    json_value,
)
from models.domain.status import CellStatus

# COPY column order: what changes from cell to cell first, then the fields that repeat
# for every seed of a (prompt, bucket, setting) and are formatted once for all of them.
_PER_CELL: Final = ("index", "seed")
_REPEATED: Final = tuple(name for name in CELL_FIELDS if name not in _PER_CELL)
COPY_COLUMNS: Final = ("job_id", "shard_index", *_PER_CELL, *_REPEATED, "status", "attempts")
_repeated = operator.attrgetter(*_REPEATED)
_QUEUED: Final = CellStatus.QUEUED.value


def copy_lines(job_id: uuid.UUID, cells: list[Cell], shard_of: Mapping[int, int]) -> str:
    """The cells in COPY's text format, in ``COPY_COLUMNS`` order."""
    formatted: dict[tuple[Any, ...], str] = {}
    job = str(job_id)
    lines = []
    for c in cells:
        values = _repeated(c)
        rest = formatted.get(values)
        if rest is None:
            fields = (json_value(n, v) for n, v in zip(_REPEATED, values, strict=True))
            rest = formatted[values] = "\t".join(map(copy_field, fields))
        lines.append(f"{job}\t{shard_of[c.index]}\t{c.index}\t{c.seed}\t{rest}\t{_QUEUED}\t0\n")
    return "".join(lines)


def insert_rows(
    job_id: uuid.UUID, cells: list[Cell], shard_of: Mapping[int, int]
) -> list[dict[str, Any]]:
    """The cells as rows for an INSERT (SQLite's path)."""
    return [
        {
            "job_id": job_id,
            "shard_index": shard_of[c.index],
            **{name: json_value(name, getattr(c, name)) for name in CELL_FIELDS},
            "status": _QUEUED,
            "attempts": 0,
        }
        for c in cells
    ]


def cell_of(row: Mapping[Any, Any]) -> Cell:
    """A cell from its columns; NULL in a field with a default (an older row) is that
    default (emphasis was NULL for "original" before it was always written)."""
    values = {
        name: DEFAULTS[name] if row[name] is None and name in DEFAULTS else row[name]
        for name in CELL_FIELDS
    }
    values.update((n, from_json_value(n, values[n])) for n in JSON_FIELDS)
    return Cell(**values)


def item_cell(item: Item) -> Cell:
    return cell_of({name: getattr(item, name) for name in CELL_FIELDS})


CELL_COLUMNS: Final = [getattr(Item, name) for name in CELL_FIELDS]


# Built once: building it per call (a column list of every cell field) was a third of the
# CPU of a simulated worker's claim-render-finish cycle (bench/fleet.py).
QUEUED_CELLS: Final = (
    select(*CELL_COLUMNS)
    .where(
        Item.job_id == bindparam("job_id"),
        Item.shard_index == bindparam("shard_index"),
        Item.status == CellStatus.QUEUED.value,
    )
    .order_by(Item.index)
)


def queued_cells(session: Session, *, job_id: uuid.UUID, shard_index: int) -> list[Cell]:
    """A shard's cells that still need an image, in index order."""
    rows = session.execute(QUEUED_CELLS, {"job_id": job_id, "shard_index": shard_index})
    return [cell_of(row._mapping) for row in rows]
