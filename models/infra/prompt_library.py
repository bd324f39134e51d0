"""The operator's styles and wildcard lists, read from files (FARM_STYLES_FILE, FARM_WILDCARDS_DIR).

Styles: A1111's ``styles.csv`` (columns ``name``, ``prompt``, ``negative_prompt``; others
are ignored), or a JSON list of objects with those keys (what ``GET /v1/styles``
returns). The file replaces the shipped defaults, the Animagine demo's presets.

Wildcards, as the Dynamic Prompts extension lays them out: every ``.txt`` file under the
folder is a list named by its path without the extension (``animals/cats.txt`` is
``__animals/cats__``), one value per line, blank lines and lines starting with ``#``
left out; a ``.yaml``/``.yml``/``.json`` file holds lists under nested keys, named by the
file's folder and the key path (``artists.yaml`` with ``finnish: [...]`` under
``artists`` is ``__artists/finnish__``; values that are not lists of strings are ignored).

Read once per process and kept: a change takes a restart of the API (and of ``farm
beat``, which submits campaign runs). A file that cannot be read stops the process at
start, naming the setting.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from models.domain.prompt_pipeline import DEFAULT_LIBRARY, PromptLibrary
from models.domain.styles import Style


class PromptLibraryError(ValueError):
    """A styles file or wildcards folder that cannot be read; says which and why."""


@lru_cache(maxsize=8)
def load_prompt_library(styles_file: Path | None, wildcards_dir: Path | None) -> PromptLibrary:
    styles = DEFAULT_LIBRARY.styles if styles_file is None else read_styles(styles_file)
    wildcards = {} if wildcards_dir is None else read_wildcards(wildcards_dir)
    return PromptLibrary(styles=styles, wildcards=wildcards)


def read_styles(path: Path) -> dict[str, Style]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # A1111 writes a BOM on Windows
    except OSError as exc:
        raise PromptLibraryError(f"FARM_STYLES_FILE={path}: {exc.strerror or exc}") from None
    try:
        rows = _json_rows(text) if path.suffix.lower() == ".json" else _csv_rows(text)
        styles = {
            str(row["name"]): Style(
                str(row["name"]),
                str(row.get("prompt") or ""),
                str(row.get("negative_prompt") or ""),
            )
            for row in rows
            if row.get("name")
        }
    except (ValueError, KeyError, TypeError, csv.Error) as exc:
        raise PromptLibraryError(f"FARM_STYLES_FILE={path}: {exc}") from None
    if not styles:
        raise PromptLibraryError(f"FARM_STYLES_FILE={path}: no style (a row needs a name)")
    return styles


def _csv_rows(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    if reader.fieldnames is None or "name" not in reader.fieldnames:
        raise ValueError("the first row must name the columns: name,prompt,negative_prompt")
    return list(reader)


def _json_rows(text: str) -> list[dict[str, Any]]:
    data = json.loads(text)
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ValueError('a JSON styles file is a list of {"name", "prompt", "negative_prompt"}')
    return data


def read_wildcards(folder: Path) -> dict[str, tuple[str, ...]]:
    if not folder.is_dir():
        raise PromptLibraryError(f"FARM_WILDCARDS_DIR={folder}: not a folder")
    lists: dict[str, tuple[str, ...]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        suffix = path.suffix.lower()
        try:
            if suffix == ".txt":
                lists[str(relative.with_suffix(""))] = _text_values(path.read_text("utf-8"))
            elif suffix in (".yaml", ".yml", ".json"):
                raw = path.read_text("utf-8")
                data = json.loads(raw) if suffix == ".json" else yaml.safe_load(raw)
                parent = "" if str(relative.parent) == "." else f"{relative.parent}/"
                lists.update((parent + name, values) for name, values in _nested_lists(data))
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            raise PromptLibraryError(f"FARM_WILDCARDS_DIR: {relative}: {exc}") from None
    return lists


def _text_values(text: str) -> tuple[str, ...]:
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def _nested_lists(data: Any, prefix: str = "") -> Iterator[tuple[str, tuple[str, ...]]]:
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            yield name, tuple(v.strip() for v in value if v.strip())
        elif isinstance(value, dict):
            yield from _nested_lists(value, f"{name}/")
