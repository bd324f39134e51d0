"""Rows to public schemas: the one place that shapes what a client sees."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from api.schemas import AnalysisOut, DryRunExample, ImageOut, JobOut
from models.db.cell_rows import item_cell
from models.db.poll import PolledJob
from models.db.tables import Item, Job
from models.domain.cells import Cell, cell_values
from models.domain.policy import url_lifetime_s
from models.domain.status import TERMINAL_JOB_STATUSES, CellStatus, JobStatus, Priority
from models.infra.storage import GALLERY_NAME, MANIFEST_NAME, Storage


def eta_seconds(job: PolledJob, now: datetime) -> float | None:
    """Remaining cells at the job's observed wall-clock rate (counts all its workers)."""
    if job.status != JobStatus.RUNNING or job.started_at is None or job.done == 0:
        return None
    remaining = job.total - job.done - job.failed - job.cancelled
    elapsed = (now - job.started_at).total_seconds()
    return round(max(0.0, elapsed / job.done * remaining), 1)


def job_out(row: PolledJob | Job) -> JobOut:
    """The public view of a job: from the poll's columns, or a loaded job's."""
    job = row if isinstance(row, PolledJob) else PolledJob.of(row)
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
        paused=job.paused_at is not None and JobStatus(job.status) not in TERMINAL_JOB_STATUSES,
        paused_at=job.paused_at,
        held=job.held,
        gpu_seconds=round(job.render_ms_total / 1000, 3),
        max_gpu_seconds=None if job.max_gpu_ms is None else job.max_gpu_ms / 1000,
        retention_s=job.retention_s,
        expires_at=job.expires_at,
        expired_at=job.expired_at,
        removed_objects=job.removed_objects,
        parent_job_id=job.parent_job_id,
        children=[uuid.UUID(str(c)) for c in job.children or []],
        links={
            "self": base,
            "images": f"{base}/images",
            "cancel": f"{base}/cancel",
            "pause": f"{base}/pause",
            "resume": f"{base}/resume",
            "refine": f"{base}/refine",
            # The web page, and the job folder's files (written by the worker as cells land).
            "page": f"/web/jobs/{job.id}",
            "contact_sheets": f"/web/jobs/{job.id}/sheets",
            "gallery": f"/web/jobs/{job.id}/files/{GALLERY_NAME}",
            "manifest": f"/web/jobs/{job.id}/files/{MANIFEST_NAME}",
        },
    )


def dry_run_examples(cells: list[Cell], *, most: int = 10) -> list[DryRunExample]:
    """The first cells whose texts differ: what the prompt pipeline made of the spec."""
    seen: set[tuple[str, str]] = set()
    examples: list[DryRunExample] = []
    for cell in cells:
        texts = (cell.prompt, cell.negative_prompt)
        if texts in seen:
            continue
        seen.add(texts)
        examples.append(
            DryRunExample(
                index=cell.index,
                prompt_index=cell.prompt_index,
                style=cell.style,
                wildcard_values=cell.wildcard_values,
                prompt=cell.prompt,
                negative_prompt=cell.negative_prompt,
            )
        )
        if len(examples) == most:
            break
    return examples


def job_etag(job: PolledJob) -> str:
    return f'W/"{job.id.hex}-{job.version}"'


def url_expiry_s(job: Job, settings_expiry_s: int) -> int | None:
    """How long the job's presigned URLs live: never past its files' expiry (None: none)."""
    return url_lifetime_s(
        url_expiry_s=settings_expiry_s,
        now=datetime.now(UTC),
        expires_at=job.expires_at,
        expired_at=job.expired_at,
        retention_s=job.retention_s,
    )


def image_out(
    item: Item,
    storage: Storage,
    *,
    expires_s: int | None,
    analyses: dict[str, tuple[str, float]] | None = None,
) -> ImageOut:
    """A cell's public view: its fields (``models.domain.cells``), then its outcome. No
    URL once its image expired (or when ``expires_s`` is None)."""
    live = item.key and item.status == CellStatus.DONE and expires_s
    return ImageOut(
        **cell_values(item_cell(item)),
        status=item.status,
        key=item.key,
        url=storage.url(item.key, expires_s=expires_s) if live and item.key and expires_s else None,
        sha256=item.sha256,
        rating=item.rating,
        error=item.error,
        render_ms=item.render_ms,
        device=item.device,
        analysis={k: AnalysisOut(label=v[0], score=v[1]) for k, v in analyses.items()}
        if analyses
        else None,
        released=item.hold == "released",
        score=item.score,
        score_label=item.score_label,
    )
