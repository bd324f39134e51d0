"""An operator's decision on a held image: release it (it moves to its ordinary key and
comes back to the images API; workers redraw the job's sheets, manifest and gallery) or
delete it (the object goes, the cell keeps its parameters and says ``deleted``).

Storage first, then the row, in the caller's transaction: if the commit fails after the
move, the operator's retry finds the image already at its ordinary key and only
records it.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from models.db.holds import held_cell, mark_deleted, mark_released
from models.db.tables import Item, Job
from models.infra.held_storage import released_key
from models.infra.settings import Settings
from models.infra.storage import Storage
from models.infra.storage_sweep import delete_key, move


class NotHeld(Exception):
    """No held image at that job and index."""


def _locked(session: Session, job_id: uuid.UUID, index: int) -> Item:
    item = held_cell(session, job_id=job_id, index=index)
    if item is None or item.key is None:
        raise NotHeld(f"cell {index} of job {job_id} is not held")
    return item


def release(
    session: Session, *, settings: Settings, storage: Storage, job: Job, index: int
) -> Item:
    item = _locked(session, job.id, index)
    assert item.key is not None
    target = released_key(
        item.key, prefix=settings.s3_prefix, tenant_id=job.tenant_id, job_id=job.id
    )
    if storage.exists(item.key):
        move(storage, item.key, target, content_type="image/png")
    elif not storage.exists(target):
        raise NotHeld(f"the held image of cell {index} of job {job.id} is gone from storage")
    mark_released(session, item=item, key=target)
    return item


def delete_held(session: Session, *, storage: Storage, job: Job, index: int) -> Item:
    item = _locked(session, job.id, index)
    assert item.key is not None
    delete_key(storage, item.key)
    mark_deleted(session, item=item)
    return item
