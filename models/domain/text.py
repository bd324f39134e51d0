"""Text fields that every store can hold: no NUL characters, no lone surrogates.

Postgres rejects NUL in text and a lone UTF-16 surrogate cannot be encoded as
UTF-8; both arrive easily through JSON (``"\\u0000"``, ``"\\ud800"``). They are
refused at validation, naming the field, instead of failing at the database.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StrictStr


def check_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode text (a lone surrogate)") from None
    return value


Text = Annotated[StrictStr, AfterValidator(check_text)]
