"""Rows to public schemas: the one place that shapes what a client sees."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from api.schemas import ImageOut, JobOut
from models.db.tables import Item
from models.domain.status import JobStatus, Priority
from models.infra.storage import GALLERY_NAME, MANIFEST_NAME, Storage


class JobStatusRow(Protocol):
    """What a job's public view reads: an ORM ``Job``, or the poll fast path's row."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def total(self) -> int: ...
    @property
    def done(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def cancelled(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def labels(self) -> dict[str, Any]: ...
    @property
    def model(self) -> str: ...
    @property
    def priority(self) -> str: ...
    @property
    def version(self) -> int: ...


def eta_seconds(job: JobStatusRow, now: datetime) -> float | None:
    """Remaining cells at the job's observed wall-clock rate (counts all its workers)."""
    if job.status != JobStatus.RUNNING or job.started_at is None or job.done == 0:
        return None
    remaining = job.total - job.done - job.failed - job.cancelled
    elapsed = (now - job.started_at).total_seconds()
    return round(max(0.0, elapsed / job.done * remaining), 1)


def job_out(job: JobStatusRow) -> JobOut:
    finished = job.done + job.failed + job.cancelled
    base = f"/v1/jobs/{job.id}"
    return JobOut(
        id=job.id,
        status=JobStatus(job.status),
        total=job.total,
        done=job.done,
        failed=job.failed,
        cancelled=job.cancelled,
        progress=round(finished / job.total, 4) if job.total else 1.0,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        eta_seconds=eta_seconds(job, datetime.now(UTC)),
        error=job.error,
        name=job.name,
        labels=job.labels,
        model=job.model,
        priority=Priority(job.priority),
        links={
            "self": base,
            "images": f"{base}/images",
            "cancel": f"{base}/cancel",
            # The web page, and the job folder's files (written by the worker as cells land).
            "page": f"/web/jobs/{job.id}",
            "contact_sheets": f"/web/jobs/{job.id}/sheets",
            "gallery": f"/web/jobs/{job.id}/files/{GALLERY_NAME}",
            "manifest": f"/web/jobs/{job.id}/files/{MANIFEST_NAME}",
        },
    )


def job_etag(job: JobStatusRow) -> str:
    return f'W/"{job.id.hex}-{job.version}"'


def image_out(item: Item, storage: Storage, *, expires_s: int) -> ImageOut:
    return ImageOut(
        index=item.index,
        prompt_index=item.prompt_index,
        prompt=item.prompt,
        negative_prompt=item.negative_prompt,
        bucket=item.bucket,
        width=item.width,
        height=item.height,
        seed=item.seed,
        steps=item.steps,
        guidance_scale=item.guidance_scale,
        sampler=item.sampler,
        status=item.status,
        key=item.key,
        url=storage.url(item.key, expires_s=expires_s) if item.key else None,
        sha256=item.sha256,
        rating=item.rating,
        error=item.error,
    )
