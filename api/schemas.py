"""What the API returns. Routes build these from rows; a route never returns a row."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from models.domain.status import JobStatus, Priority


class JobOut(BaseModel):
    id: uuid.UUID
    status: JobStatus
    total: int
    done: int
    failed: int
    cancelled: int
    progress: float  # (done + failed + cancelled) / total
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    eta_seconds: float | None
    error: str | None
    name: str | None
    labels: dict[str, str]
    model: str
    priority: Priority
    links: dict[str, str]


class DryRunOut(BaseModel):
    """``POST /v1/jobs?dry_run=true``: the grid checked and counted, nothing created."""

    dry_run: bool = True
    total: int
    estimated_gpu_seconds: float  # on one H100 (models/domain/axes.py has the assumptions)
    axes: dict[str, int]  # values per axis, outermost first


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class BulkJobsOut(BaseModel):
    ids: list[uuid.UUID]
    jobs: list[JobOut]


class ImageOut(BaseModel):
    index: int
    prompt_index: int
    prompt: str
    negative_prompt: str
    bucket: str
    width: int
    height: int
    seed: int
    steps: int
    guidance_scale: float
    sampler: str
    status: str
    key: str | None
    url: str | None
    sha256: str | None
    rating: str | None
    error: str | None


class ImagePage(BaseModel):
    items: list[ImageOut]
    next_cursor: str | None


class BulkJobsIn(BaseModel):
    jobs: list[dict[str, Any]]
