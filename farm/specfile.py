"""Reading job specs from YAML, JSON or JSONL files (JSONL: one job per line -> bulk)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def load_specs(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        specs = [json.loads(line) for line in text.splitlines() if line.strip()]
    elif path.suffix.lower() == ".json":
        specs = _as_list(json.loads(text))
    else:
        specs = _as_list(yaml.safe_load(text))
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: job {i} is not a mapping of spec fields")
    return specs


def _as_list(data: Any) -> list[Any]:
    if isinstance(data, dict) and isinstance(data.get("jobs"), list):
        return list(data["jobs"])
    return data if isinstance(data, list) else [data]
