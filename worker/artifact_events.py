"""What the writer hands the job-artifacts thread (worker/job_artifacts.py), and what
that thread counts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from PIL import Image


@dataclass(frozen=True)
class Landed:
    """Cells of one job recorded by a writer: thumbnails to make, sheets to redraw."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    cells: list[tuple[int, str, Image.Image | None]]  # index, image key, image (if kept)
    held: int  # images this event keeps in memory


@dataclass(frozen=True)
class Finished:
    """A job reached its end: final sheets, manifest and gallery."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID


@dataclass
class ArtifactCounters:
    """What the artifacts thread did, for tests and benchmarks."""

    thumbs: int = 0
    sheets: int = 0
    jobs_finished: int = 0
    stripped_images: int = 0  # cells whose thumbnail had to come from the stored PNG
    landed_batches: int = 0  # times landed shards were handled (several at once when behind)
    seconds: dict[str, float] = field(default_factory=dict)
