"""Postgres ``COPY ... FROM STDIN`` in text format, on a session's own connection.

Writing a 10,000-cell grid row by row (``executemany``) took ~1 s; COPY takes ~0.1 s
(docs/PERFORMANCE.md). The encoder is hand-written for that speed: each field is
formatted by its Python type, and callers format repeated runs of fields once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from sqlalchemy.orm import Session

NULL: Final = "\\N"
_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    return value.translate(_ESCAPES)


def copy_field(value: object) -> str:
    """One field in COPY's text format: ``\\N`` is NULL."""
    if value is None:
        return NULL
    if isinstance(value, str):
        return copy_text(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return copy_text(json.dumps(value, separators=(",", ":"), sort_keys=True))


def copy_rows(session: Session, table: str, columns: Sequence[str], data: str) -> None:
    """COPY ``data`` (lines of tab-separated fields) into ``table`` in the session's
    transaction."""
    if not data:
        return
    names = ", ".join(f'"{c}"' for c in columns)
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        copy.write(data)
