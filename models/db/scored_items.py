"""A job's images best first: ``GET /v1/jobs/{id}/images?order=score``.

Keyset paged like every list (models/db/pagination.py): the order is score descending,
unscored cells (score NULL) last, then index, so it is total; the cursor is the last
item's (score or null, index), checked like the others' before it reaches a query.
"""

from __future__ import annotations

import math
import uuid

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from models.db.holds import VISIBLE
from models.db.pagination import CursorError, Page, cursor_parts, encode_cursor, index_part
from models.db.tables import Item


def decode_score_cursor(cursor: str) -> tuple[float | None, int]:
    score, index = cursor_parts(cursor, 2)
    if score is not None and (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or abs(score) > 1e300
    ):
        raise CursorError("not a valid cursor")
    return (None if score is None else float(score)), index_part(index)


def items_by_score(
    session: Session, *, job_id: uuid.UUID, cursor: str | None, limit: int
) -> Page[Item]:
    """A job's listed cells (not those screening holds), best score first."""
    query = select(Item).where(Item.job_id == job_id, VISIBLE)
    if cursor:
        score, index = decode_score_cursor(cursor)
        if score is None:  # among the unscored, by index
            query = query.where(Item.score.is_(None), Item.index > index)
        else:
            query = query.where(
                or_(
                    Item.score < score,
                    and_(Item.score == score, Item.index > index),
                    Item.score.is_(None),
                )
            )
    order = (Item.score.desc().nulls_last(), Item.index)
    items = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    if len(items) <= limit:
        return Page(items, None)
    last = items[limit - 1]
    return Page(items[:limit], encode_cursor(last.score, last.index))
