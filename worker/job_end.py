"""A finished job's ``manifest.json`` and ``index.html`` (the gallery), from stored state."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from models.db.artifacts import find_job, job_cells
from models.infra.settings import Settings
from models.infra.storage import GALLERY_NAME, MANIFEST_NAME, Storage
from worker.gallery import build_gallery
from worker.manifest import build_manifest, encode_manifest

log = logging.getLogger(__name__)


def model_revision_of(settings: Settings) -> Callable[[str], str]:
    """The manifest's model revision (see ``model_fingerprint``), computed once per model."""

    @lru_cache(maxsize=16)
    def revision(name: str) -> str:
        source = settings.models.get(name, name)
        if source.startswith("simulated"):
            return source  # no weights; don't import torch for it
        try:
            # Here, not at the top: model_loading imports torch and diffusers.
            from models.domain.model_sources import parse_model_source
            from worker.model_loading import model_fingerprint

            return model_fingerprint(parse_model_source(source), cache_dir=settings.models_dir)
        except Exception:
            log.exception("no revision for model %s", name)
            return "unknown"

    return revision


def job_manifest(
    session: Session,
    *,
    job_id: uuid.UUID,
    folder: str,
    model_revision: Callable[[str], str],
    environment: Mapping[str, str] | None = None,
    best_of_k: int = 8,
) -> dict[str, Any] | None:
    """The job's manifest as it is stored now; None if the job is gone."""
    job = find_job(session, job_id=job_id)
    if job is None:
        return None
    return build_manifest(
        job=job,
        items=job_cells(session, job_id=job_id),
        folder=folder,
        model_revision=model_revision(job.model),
        environment=environment,
        best_of_k=best_of_k,
    )


def write_job_files(storage: Storage, *, folder: str, manifest: dict[str, Any]) -> None:
    storage.put(
        f"{folder}/{MANIFEST_NAME}", encode_manifest(manifest), content_type="application/json"
    )
    storage.put(
        f"{folder}/{GALLERY_NAME}",
        build_gallery(manifest).encode(),
        content_type="text/html; charset=utf-8",
    )
