"""A refinement's base images: its parent cells' PNGs, read back from storage.

A child cell with ``base_sha256`` runs only the hi-res pass, on its parent's stored
image (the latents of the parent's base pass are not kept: the PNG is). The bytes read
must hash to the sha256 the child recorded when it was made, which is the parent's: a
re-rendered or replaced parent image fails the cell rather than refine another image.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from models.db.refine import base_keys
from models.domain.cells import Cell
from models.infra.storage import Storage
from worker.render_batch import RenderBatch


class BaseImageError(Exception):
    """A parent image is gone, or is not the one the child was made from."""


def load_bases(
    sessions: sessionmaker[Session], storage: Storage, cells: Sequence[Cell]
) -> tuple[Image.Image, ...] | None:
    """Each cell's base image, in order; None when the cells render their base pass."""
    if all(c.base_sha256 is None for c in cells):
        return None
    wanted: dict[str, list[int]] = {}
    for c in cells:
        if c.parent_job_id is None or c.parent_index is None:
            raise BaseImageError(f"cell {c.index} has a base image but names no parent cell")
        wanted.setdefault(c.parent_job_id, []).append(c.parent_index)
    keys: dict[tuple[str, int], str | None] = {}
    with sessions() as session:
        for parent, indexes in wanted.items():
            found = base_keys(session, parent_job_id=parent, indexes=indexes)
            keys.update(((parent, i), key) for i, (key, _sha) in found.items())
    images = []
    for cell in cells:
        name = f"{cell.parent_job_id}#{cell.parent_index}"
        key = keys.get((str(cell.parent_job_id), int(cell.parent_index or 0)))
        if key is None:
            raise BaseImageError(f"parent cell {name} has no stored image")
        data = storage.get(key)
        digest = hashlib.sha256(data).hexdigest()
        if digest != cell.base_sha256:
            raise BaseImageError(f"parent cell {name}'s image is {digest}, not {cell.base_sha256}")
        images.append(Image.open(io.BytesIO(data)).convert("RGB"))
    return tuple(images)


def batch_with_bases(
    sessions: sessionmaker[Session], storage: Storage, cells: Sequence[Cell]
) -> RenderBatch:
    return RenderBatch(tuple(cells), load_bases(sessions, storage, cells))
