"""``manifest.json``: what a job was and what it produced, next to its images.

The spec as submitted, the resolved grid (with the styles and combinatorial wildcard
values the job used), the model (name and revision), the environment of the worker that
wrote it (farm, Python, torch, diffusers and transformers versions, the device), and
every cell's parameters, storage key, sha256 and status. Paths inside the job folder are
relative, so the folder can be copied or synced as a whole. Built only from stored state
and that environment, so rewriting it on the same worker gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from models.db.cell_rows import item_cell
from models.db.tables import Item, Job
from models.domain.cells import cell_values, viewer_fields
from models.infra.storage import GALLERY_NAME, sheet_name, thumb_name

MANIFEST_VERSION = 1


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def relative_file(key: str, folder: str) -> str:
    """A cell's image as a path inside the job folder (its key if stored elsewhere)."""
    return key.removeprefix(folder + "/") if key.startswith(folder + "/") else key


def cell_entry(item: Item, folder: str) -> dict[str, Any]:
    """A cell's fields (``models.domain.cells``), then its outcome and its files."""
    file = relative_file(item.key, folder) if item.key else None
    return {
        **cell_values(item_cell(item)),
        "status": item.status,
        "key": item.key,
        "file": file,
        "thumb": thumb_name(file) if file else None,
        "sha256": item.sha256,
        "rating": item.rating,
        "render_ms": item.render_ms,
        "error": item.error,
    }


def build_manifest(
    *,
    job: Job,
    items: list[Item],
    folder: str,
    model_revision: str,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    grid = dict(job.grid)
    return {
        "manifest_version": MANIFEST_VERSION,
        "job": {
            "id": str(job.id),
            "name": job.name,
            "labels": job.labels,
            "status": job.status,
            "priority": job.priority,
            "total": job.total,
            "done": job.done,
            "failed": job.failed,
            "cancelled": job.cancelled,
            "error": job.error,
            "created_at": _time(job.created_at),
            "started_at": _time(job.started_at),
            "finished_at": _time(job.finished_at),
        },
        "model": {"name": job.model, "revision": model_revision},
        # Library versions and the device: what ties the cells' pixels to a machine.
        "environment": dict(environment or {}),
        "spec": job.spec,
        "grid": grid,
        "axes": {
            "prompt": list(grid.get("prompts", [])),
            "bucket": list(grid.get("buckets", [])),
            "seed": list(grid.get("seeds", [])),
        },
        # The render fields every cell carries, with A1111's names where it has one:
        # what a viewer lists for a cell (the gallery reads this, not a list of its own).
        "cell_fields": [list(field) for field in viewer_fields()],
        "contact_sheets": [sheet_name(i) for i in range(len(grid.get("prompts", [])))],
        "gallery": GALLERY_NAME,
        "cells": [cell_entry(item, folder) for item in sorted(items, key=lambda i: i.index)],
    }


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
