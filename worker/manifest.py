"""``manifest.json``: what a job was and what it produced, next to its images.

The spec as submitted, the resolved grid (with the styles and combinatorial wildcard
values the job used), the model (name and revision), the environment of the worker that
wrote it (farm, Python, torch, diffusers and transformers versions, the device), and
every cell's parameters, storage key, sha256, status, score and score label, and each
prompt's "best of" (its top cells by score, as its best-of sheet shows them). Paths
inside the job folder are relative, so the folder can be copied or synced as a whole.
Built only from stored state and that environment, so rewriting it on the same worker
gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from models.db.cell_rows import item_cell
from models.db.tables import Item, Job
from models.domain.cells import cell_values, viewer_fields
from models.domain.scores import Scored, best_of
from models.domain.status import CellStatus
from models.infra.storage import GALLERY_NAME, best_sheet_name, sheet_name, thumb_name
from worker.variant_axes import variant_axes

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
        "score": item.score,
        "score_label": item.score_label,
    }


def ranked_items(items: list[Item], k: int) -> dict[int, list[Item]]:
    """Each prompt's ``k`` best stored images by score (models/domain/scores.py)."""
    by_index = {item.index: item for item in items}
    scored = [
        Scored(i.index, i.prompt_index, i.score)
        for i in items
        if i.score is not None and i.status == CellStatus.DONE and i.key
    ]
    return {p: [by_index[c.index] for c in best] for p, best in best_of(scored, k).items()}


def build_manifest(
    *,
    job: Job,
    items: list[Item],
    folder: str,
    model_revision: str,
    environment: Mapping[str, str] | None = None,
    best_of_k: int = 8,
) -> dict[str, Any]:
    grid = dict(job.grid)
    ranked = ranked_items(items, best_of_k)
    cells = [cell_entry(item, folder) for item in sorted(items, key=lambda i: i.index)]
    places = (
        len(grid.get("prompts", [])) * len(grid.get("buckets", [])) * len(grid.get("seeds", []))
    )
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
        # The setting axes inside each (prompt, bucket, seed): a viewer picks a value of each.
        "variants": variant_axes(cells, job.total // places if places else 1),
        # The render fields every cell carries, with A1111's names where it has one:
        # what a viewer lists for a cell (the gallery reads this, not a list of its own).
        "cell_fields": [list(field) for field in viewer_fields()],
        "contact_sheets": [sheet_name(i) for i in range(len(grid.get("prompts", [])))],
        "gallery": GALLERY_NAME,
        # Per prompt with scored images: its best-of sheet and the cells on it, in order.
        "best_of": [
            {"prompt": p, "sheet": best_sheet_name(p), "cells": [i.index for i in ranked[p]]}
            for p in sorted(ranked)
        ],
        "cells": cells,
    }


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
