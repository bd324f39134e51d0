"""Keyset paging for every list the API serves: ``{items, next_cursor}``.

A cursor is the sort key of the last item returned, opaque to clients (base64 of a
JSON list). ``decode_cursor`` accepts only what ``encode_cursor`` could have made for
that list: the right number of parts, each of its kind and within what its column
holds. Anything else is a ``CursorError`` (the API's 400 naming ``cursor``), never a
query that fails in the database.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Select, TypeDecorator, tuple_
from sqlalchemy.orm import QueryableAttribute, Session

T = TypeVar("T")
AnySelect = Select[*tuple[Any, ...]]
SortColumn = QueryableAttribute[Any]
CursorPart = int | datetime | uuid.UUID
MAX_CURSOR_CHARS: Final = 512
_MAX_BIGINT: Final = 2**63 - 1


class CursorError(ValueError):
    """Not a cursor this list made."""


def encode_cursor(*parts: CursorPart | float | None) -> str:
    values = [p.isoformat() if isinstance(p, datetime) else p for p in parts]
    text = json.dumps([str(v) if isinstance(v, uuid.UUID) else v for v in values])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: Sequence[type[CursorPart]]) -> tuple[CursorPart, ...]:
    """The parts of a cursor of ``kinds`` (int, datetime, uuid.UUID), or CursorError."""
    parts = cursor_parts(cursor, len(kinds))
    return tuple(_part(value, kind) for value, kind in zip(parts, kinds, strict=True))


def cursor_parts(cursor: str, count: int) -> list[object]:
    """The ``count`` JSON values a cursor holds, unchecked (the list checks each), or
    CursorError."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise CursorError("not a valid cursor (too long)")
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii"))
        parts = json.loads(raw)
    except (UnicodeError, binascii.Error, ValueError, RecursionError):
        raise CursorError("not a valid cursor") from None
    if not isinstance(parts, list) or len(parts) != count:
        raise CursorError("not a valid cursor")
    return parts


def index_part(value: object) -> int:
    """A cursor's index part (a non-negative bigint), or CursorError."""
    part = _part(value, int)
    assert isinstance(part, int)
    return part


def _part(value: object, kind: type[CursorPart]) -> CursorPart:
    try:
        if kind is int:
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_BIGINT:
                return value
        elif kind is datetime and isinstance(value, str):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                return moment
        elif kind is uuid.UUID and isinstance(value, str):
            return uuid.UUID(value)
    except ValueError:
        pass
    raise CursorError("not a valid cursor")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def keyset_page(
    session: Session,
    query: AnySelect,
    *,
    order: Sequence[SortColumn],
    key: Callable[[T], tuple[CursorPart, ...]],
    cursor: str | None,
    limit: int,
    descending: bool = False,
    rows: bool = False,
) -> Page[T]:
    """One page of ``query`` in ``order`` (a unique sort key), after ``cursor``.

    ``key`` gives an item's sort key (what its cursor holds); ``rows``: the items are
    result rows (several entities per item) rather than scalars.
    """
    if cursor:
        after = decode_cursor(cursor, [_kind_of(column) for column in order])
        position = tuple_(*order)
        query = query.where(position < tuple_(*after) if descending else position > tuple_(*after))
    sort = [c.desc() for c in order] if descending else list(order)
    result = session.execute(query.order_by(*sort).limit(limit + 1))
    items: list[T] = list(result.all() if rows else result.scalars().all())  # type: ignore[arg-type]
    if len(items) <= limit:
        return Page(items, None)
    items = items[:limit]
    return Page(items, encode_cursor(*key(items[-1])))


def _kind_of(column: SortColumn) -> type[CursorPart]:
    """The Python type a sort column's cursor part has."""
    column_type = column.type
    if isinstance(column_type, TypeDecorator):  # UTCDateTime: its impl knows the type
        column_type = column_type.impl_instance
    python_type = column_type.python_type
    for kind in (datetime, uuid.UUID, int):
        if issubclass(python_type, kind):
            return kind
    raise TypeError(f"cannot page on a column of type {python_type}")
