"""The COPY text of a grid's cells (Postgres) holds what the portable inserts hold
(SQLite): the same columns, values and escapes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from models.db.cell_rows import COPY_COLUMNS, copy_lines, insert_rows
from models.domain.cells import CELL_FIELDS
from models.domain.grid import expand, plan_shards, resolve
from models.domain.spec import JobSpec

_UNESCAPE = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def _field(text: str) -> str | None:
    """One field as Postgres reads it; a raw CR or a stray backslash is an error."""
    if text == "\\N":
        return None
    out, i = [], 0
    while i < len(text):
        assert text[i] != "\r", f"raw carriage return in {text!r}"
        if text[i] == "\\":
            pair = text[i : i + 2]
            assert pair in _UNESCAPE, f"unknown escape {pair!r} in {text!r}"
            out.append(_UNESCAPE[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize(
    "body",
    [
        {"prompts": ["1girl, solo", "1boy"], "buckets": ["1:1", "13:19"], "seeds": [1, 2, 3]},
        {
            "prompts": ["tab\there, back\\slash", "new\nline"],
            "negative_prompt": "cr\rhere",
            "seeds": [7],
            "sampler": ["euler_a", "dpmpp_2m"],
            "steps": [20, 28],
            "guidance_scale": [5, 7.5],
        },
        {
            "prompts": ["a cat, red", "a dog"],
            "prompt_replace": ["red", "blue", "green"],
            "negative_prompt": "red, lowres",
            "seeds": [1, 2],
            "hires": {"scale": 1.5, "strength": 0.5, "steps": 10},
            "emphasis": "no_norm",
        },
    ],
)
def test_copy_lines_hold_the_portable_rows(body: dict[str, Any]) -> None:
    cells = expand(resolve(JobSpec.model_validate(body), default_model="m"))
    shard_of = {i: s.index for s in plan_shards(cells, batch_size=4) for i in s.cell_indices}
    job_id = uuid.uuid4()
    lines = copy_lines(job_id, cells, shard_of).split("\n")
    assert lines.pop() == ""  # every row ends with a newline
    rows = insert_rows(job_id, cells, shard_of)
    assert len(lines) == len(rows) == len(cells)
    # Both carry every field of the cell schema, and nothing else but these four.
    assert (
        set(COPY_COLUMNS)
        == set(rows[0])
        == {*CELL_FIELDS, "job_id", "shard_index"}
        | {
            "status",
            "attempts",
        }
    )
    for line, row in zip(lines, rows, strict=True):
        fields = [_field(f) for f in line.split("\t")]
        assert fields == [_as_text(row[column]) for column in COPY_COLUMNS]
