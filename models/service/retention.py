"""Retention and deletion, end to end: what expired loses its files, what was deleted
loses its folder, in the database first and in storage after (models/db/retention.py).

``sweep`` is one pass of ``farm beat``'s retention thread (in embedded mode, of the
API's): expire due jobs (their done cells become ``expired``, their folders are queued),
then empty queued folders (each twice: at once and after FARM_STORAGE_DELETE_GRACE_S),
then encrypt webhook secrets left in plaintext by an older version. Any number of
processes may sweep side by side: every step takes its rows with SKIP LOCKED.

``delete_job`` and ``delete_tenant`` remove the rows in the caller's transaction and
queue the folders, so storage is emptied even if the caller stops right after.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from models.db.retention import (
    claim_deletions,
    delete_job_rows,
    delete_tenant_rows,
    deletion_done,
    deletion_failed,
    due_expiries,
    mark_expired,
    queue_deletion,
)
from models.db.tables import Job, utcnow
from models.infra.encryption import SecretBox
from models.infra.held_storage import held_folder, tenant_folder
from models.infra.settings import Settings
from models.infra.storage import Storage, job_folder
from models.infra.storage_sweep import delete_folder, folder_prefix
from models.service.webhook_keys import encrypt_leftovers

log = logging.getLogger(__name__)

BATCH = 50  # jobs expired, or folders emptied, per transaction
DELETION_LEASE_S = 600.0  # a folder being emptied is another sweeper's after this


@dataclass
class SweepResult:
    expired_jobs: int = 0
    expired_cells: int = 0
    emptied_folders: int = 0
    deleted_objects: int = 0


def _job_folders(settings: Settings, *, tenant_id: uuid.UUID, job_id: uuid.UUID) -> list[str]:
    prefix = settings.s3_prefix
    return [
        folder_prefix(job_folder(prefix=prefix, tenant_id=tenant_id, job_id=job_id)),
        folder_prefix(held_folder(prefix=prefix, tenant_id=tenant_id, job_id=job_id)),
    ]


def delete_job(session: Session, *, settings: Settings, job: Job) -> None:
    """The job's rows now; its folders (and held images) by the next sweep."""
    now = utcnow()
    for prefix in _job_folders(settings, tenant_id=job.tenant_id, job_id=job.id):
        queue_deletion(session, prefix=prefix, reason="job_deleted", now=now)
    delete_job_rows(session, job_id=job.id)


def delete_tenant(session: Session, *, settings: Settings, tenant_id: uuid.UUID) -> int:
    """The tenant and all of it (keys, jobs, campaigns, policy, ledger); its folder by the
    next sweep. Returns how many jobs went."""
    folder = tenant_folder(prefix=settings.s3_prefix, tenant_id=tenant_id)
    queue_deletion(session, prefix=folder_prefix(folder), reason="tenant_deleted", now=utcnow())
    return delete_tenant_rows(session, tenant_id=tenant_id)


class RetentionSweep:
    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], storage: Storage
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self._box: SecretBox | None = None

    def sweep(self, now: datetime | None = None) -> SweepResult:
        result = SweepResult()
        self._expire(now or utcnow(), result)
        self._empty_folders(now or utcnow(), result)
        if self._box is None:
            self._box = SecretBox.from_settings(self.settings)
        with self.sessions.begin() as session:
            encrypt_leftovers(session, box=self._box)
        return result

    def _expire(self, now: datetime, result: SweepResult) -> None:
        while True:
            with self.sessions.begin() as session:
                due = due_expiries(session, now=now, limit=BATCH)
                for job_id, tenant_id in due:
                    result.expired_cells += mark_expired(session, job_id=job_id, now=now)
                    for prefix in _job_folders(self.settings, tenant_id=tenant_id, job_id=job_id):
                        queue_deletion(
                            session, prefix=prefix, reason="expired", now=now, job_id=job_id
                        )
            result.expired_jobs += len(due)
            for job_id, _ in due:
                log.info("job %s expired: its files are being deleted", job_id)
            if len(due) < BATCH:
                return

    def _empty_folders(self, now: datetime, result: SweepResult) -> None:
        while True:
            with self.sessions.begin() as session:
                tasks = claim_deletions(session, now=now, lease_s=DELETION_LEASE_S, limit=BATCH)
            for task in tasks:
                try:
                    deleted = delete_folder(self.storage, task.prefix)
                except Exception as exc:  # storage away: the lease brings the folder back
                    log.exception("could not empty %s", task.prefix)
                    with self.sessions.begin() as session:
                        deletion_failed(session, task=task, error=repr(exc))
                    continue
                with self.sessions.begin() as session:
                    deletion_done(
                        session,
                        task=task,
                        deleted=deleted,
                        grace_s=self.settings.storage_delete_grace_s,
                        now=utcnow(),
                    )
                result.emptied_folders += 1
                result.deleted_objects += deleted
            if len(tasks) < BATCH:
                return
