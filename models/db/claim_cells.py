"""A worker's claim: the shard fair share picks, and its cells that still need an image.

On Postgres one round trip, ``farm_claim_cells()`` (models/db/sql/): the claim
(``farm_claim_shard``), then the shard's queued cells read by a statement of its own in
the same call. The function returns each cell as the ``items`` row whole; the fields
read from it are named here, from the cell schema (``CELL_FIELDS``), with the items
columns' own types, so a new cell field needs no new function version. On SQLite: the
stepwise claim, then ``queued_cells``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Unpack

from sqlalchemy import BigInteger, Boolean, Integer, String, TextualSelect, Uuid, text
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from models.db.cell_rows import cell_of, queued_cells
from models.db.claims import ClaimArgs, ClaimedShard, claim_next_shard, claim_params
from models.db.tables import Item
from models.domain.cells import CELL_FIELDS, Cell

_SHARD_COLUMNS: Final[dict[str, TypeEngine[Any]]] = {
    "id": BigInteger(),
    "job_id": Uuid(),
    "tenant_id": Uuid(),
    "index": Integer(),
    "model": String(),
    "attempts": Integer(),
    "passed_over": Boolean(),
}
_CELL_LABELS: Final = {name: f"cell_{name}" for name in CELL_FIELDS}
_CELLS_AT: Final = len(_SHARD_COLUMNS)  # the first cell field's position in a row
_CELLS_END: Final = _CELLS_AT + len(CELL_FIELDS)
_CELL_INDEX_AT: Final = _CELLS_AT + CELL_FIELDS.index("index")  # NULL: no cell


def _statement() -> TextualSelect:
    # Committed without waiting for the WAL flush, as CLAIM_SQL is (models/db/claims.py).
    columns = Item.__table__.c
    fields = ", ".join(
        f"(c.cell).{columns[n].name} AS {label}" for n, label in _CELL_LABELS.items()
    )
    sql = text(
        f"SELECT {', '.join(f'c.{name}' for name in _SHARD_COLUMNS)}, {fields},"
        " set_config('synchronous_commit', 'off', true) AS async"
        " FROM farm_claim_cells(:model, :worker, :lease_s, :now, :adapters, :lookahead) c"
    )
    cell_types: dict[str, TypeEngine[Any]] = {
        label: columns[n].type for n, label in _CELL_LABELS.items()
    }
    return sql.columns(**_SHARD_COLUMNS, **cell_types, **{"async": String()})


# Built once, at import: a worker sends it once per shard.
CLAIM_CELLS_SQL: Final = _statement()


def claim_with_cells(
    session: Session, **claim: Unpack[ClaimArgs]
) -> tuple[ClaimedShard, list[Cell]] | None:
    """Claim as ``claim_next_shard`` does and read the claimed shard's queued cells, in
    index order. Claim in a statement transaction (``statement_transactions``), as
    ``claim_next_shard`` says why; the cells are then the worker's to render."""
    if session.get_bind().dialect.name != "postgresql":
        shard = claim_next_shard(session, **claim)  # SQLite's stepwise claim
        if shard is None:
            return None
        return shard, queued_cells(session, job_id=shard.job_id, shard_index=shard.index)
    return claimed_from_rows(session.execute(CLAIM_CELLS_SQL, claim_params(claim)).all())


def claimed_from_rows(rows: Sequence[Sequence[Any]]) -> tuple[ClaimedShard, list[Cell]] | None:
    """The shard and its cells from ``CLAIM_CELLS_SQL``'s rows (SQLAlchemy's or a plain
    DB-API cursor's: bench/_fleet_lean.py sends the same statement)."""
    if not rows:
        return None
    shard = ClaimedShard(*rows[0][:_CELLS_AT])
    if rows[0][_CELL_INDEX_AT] is None:
        return shard, []  # claimed, no cell left queued
    return shard, [
        cell_of(dict(zip(CELL_FIELDS, row[_CELLS_AT:_CELLS_END], strict=True))) for row in rows
    ]
