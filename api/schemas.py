"""What the API returns. Routes build these from rows; a route never returns a row."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from models.domain.cells import Cell
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
    paused: bool  # no new shard starts until it is resumed (shards in flight finish)
    paused_at: datetime | None
    held: int  # images screening holds (not listed until an operator releases them)
    gpu_seconds: float  # what its recorded cells cost, from the GPU-second ledger
    max_gpu_seconds: float | None  # the job stops (partial) once it has spent this
    retention_s: int | None  # its files are kept this long after it finishes; null: forever
    expires_at: datetime | None  # when they go (set when the job finishes)
    expired_at: datetime | None  # when they went: done cells are then ``expired``
    removed_objects: int | None  # objects deleted from storage when it expired
    # Refinements: the job this one refines (null: none) and the jobs refining it.
    parent_job_id: uuid.UUID | None = None
    children: list[uuid.UUID] = Field(default_factory=list)


class DryRunExample(BaseModel):
    """A cell's texts as the pipeline builds them: styles, wildcards and S/R applied."""

    index: int
    prompt_index: int
    style: str | None
    wildcard_values: str | None
    prompt: str
    negative_prompt: str


class DryRunOut(BaseModel):
    """``POST /v1/jobs?dry_run=true``: the grid checked and counted, nothing created."""

    dry_run: bool = True
    total: int
    estimated_gpu_seconds: float  # on one H100 (models/domain/estimate.py: the assumptions)
    axes: dict[str, int]  # values per axis, outermost first
    max_prompt_chunks: int  # the longest encoded text, in 75-token chunks
    examples: list[DryRunExample] = []  # the first cells with distinct texts (at most 10)
    retention_s: int | None  # files kept this long once the job finishes; null: forever
    expires_at_if_finished_now: datetime | None


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class BulkJobsOut(BaseModel):
    ids: list[uuid.UUID]
    jobs: list[JobOut]


class AnalysisOut(BaseModel):
    label: str
    score: float


@pydantic_dataclass(kw_only=True)
class ImageOut(Cell):
    """One cell of ``GET /v1/jobs/{id}/images``: its fields (``models.domain.cells``: the
    one declaration of a cell's render fields), then its outcome."""

    status: str
    key: str | None  # the storage key
    url: str | None  # presigned, expiring
    sha256: str | None
    rating: str | None  # the card's rating tag the prompt carries
    error: str | None
    render_ms: int | None = None  # its GPU time: its share of its shard's pipeline call
    device: str | None = None  # the device that rendered it
    analysis: dict[str, AnalysisOut] | None = None  # each image analyzer's result
    score: float | None = None  # the scorer's (FARM_SCORER), higher is better; None: unscored
    score_label: str | None = None  # the operator's word for its range (FARM_SCORE_LABELS)
    released: bool = False  # screening held it, and an operator released it


class ImagePage(BaseModel):
    items: list[ImageOut]
    next_cursor: str | None
