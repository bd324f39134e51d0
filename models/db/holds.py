"""Held images: the operator's list, release and delete; and jobs whose sheets and gallery
must be redrawn because an image came back (workers take them: ``claim_stale_artifacts``).

A held cell is ``done`` (it rendered) with ``hold = 'held'`` and a key outside its job's
folder (models/infra/held_storage.py). It is not listed by the images API, drawn on a
sheet, or written to the manifest and gallery. Release: ``hold = 'released'`` and its
ordinary key; delete: ``hold = 'deleted'`` and no key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models.db.business_tables import CellAnalysis
from models.db.claims import lock_job
from models.db.pagination import Page, keyset_page
from models.db.tables import Item, Job, utcnow

HELD = "held"
RELEASED = "released"
DELETED = "deleted"
STALE_LEASE_S = 120.0  # a worker redrawing a released image's job has this long
# The cells a client sees: never held, or released.
VISIBLE = or_(Item.hold.is_(None), Item.hold == RELEASED)


@dataclass(frozen=True)
class HeldCell:
    item: Item
    tenant_id: uuid.UUID
    analyses: dict[str, tuple[str, float]]  # analyzer -> (label, score)


def analyses_of(
    session: Session, *, job_id: uuid.UUID, indexes: list[int]
) -> dict[int, dict[str, tuple[str, float]]]:
    """Each cell's analyses, by cell index then analyzer."""
    found: dict[int, dict[str, tuple[str, float]]] = {}
    if not indexes:
        return found
    for row in session.execute(
        select(
            CellAnalysis.cell_index, CellAnalysis.analyzer, CellAnalysis.label, CellAnalysis.score
        ).where(CellAnalysis.job_id == job_id, CellAnalysis.cell_index.in_(indexes))
    ):
        found.setdefault(row.cell_index, {})[row.analyzer] = (row.label, row.score)
    return found


def list_held(
    session: Session, *, tenant_id: uuid.UUID | None, cursor: str | None, limit: int
) -> Page[HeldCell]:
    """Held cells, oldest job first (all tenants', or one's)."""
    query = select(Item, Job.tenant_id).join(Job, Job.id == Item.job_id).where(Item.hold == HELD)
    if tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    page: Page[tuple[Item, uuid.UUID]] = keyset_page(
        session,
        query,
        order=[Item.job_id, Item.index],
        key=lambda row: (row[0].job_id, row[0].index),
        cursor=cursor,
        limit=limit,
        rows=True,
    )
    cells = []
    for item, tenant in page.items:
        found = analyses_of(session, job_id=item.job_id, indexes=[item.index])
        cells.append(HeldCell(item, tenant, found.get(item.index, {})))
    return Page(cells, page.next_cursor)


def held_cell(session: Session, *, job_id: uuid.UUID, index: int) -> Item | None:
    """The held cell, locked (job first, as every writer), or None."""
    lock_job(session, job_id)
    return session.scalar(
        select(Item)
        .where(Item.job_id == job_id, Item.index == index, Item.hold == HELD)
        .with_for_update()
    )


def mark_released(session: Session, *, item: Item, key: str) -> None:
    """The cell is visible again at ``key``; its job's sheets and gallery are redrawn."""
    item.hold, item.key = RELEASED, key
    _uncount(session, item.job_id, stale=True)


def mark_deleted(session: Session, *, item: Item) -> None:
    item.hold, item.key = DELETED, None
    _uncount(session, item.job_id, stale=False)


def _uncount(session: Session, job_id: uuid.UUID, *, stale: bool) -> None:
    values: dict[str, object] = {"held": Job.held - 1, "version": Job.version + 1}
    if stale:
        values["artifacts_stale_at"] = utcnow()
    session.execute(update(Job).where(Job.id == job_id).values(**values))
    session.flush()


def claim_stale_artifacts(
    session: Session, *, lease_s: float = STALE_LEASE_S
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """A job whose sheets and gallery must be redrawn, leased to this caller: (job,
    tenant). If the caller fails, it is due again when the lease ends."""
    now = utcnow()
    found = session.execute(
        select(Job.id, Job.tenant_id)
        .where(Job.artifacts_stale_at <= now)
        .order_by(Job.artifacts_stale_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if found is None:
        return None
    lease = now + timedelta(seconds=lease_s)
    session.execute(update(Job).where(Job.id == found.id).values(artifacts_stale_at=lease))
    return found.id, found.tenant_id


def artifacts_redrawn(session: Session, *, job_id: uuid.UUID) -> None:
    """Done, unless another release came meanwhile (it set the time back to now)."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.artifacts_stale_at > utcnow())
        .values(artifacts_stale_at=None)
    )
