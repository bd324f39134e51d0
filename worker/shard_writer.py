"""The writer thread's work on a rendered shard: PNG + infotext, upload, record, notify.

Each image goes to its ordinary key, or, when screening holds it (its score is above the
tenant's threshold), to a private key outside the job's folder
(models/infra/held_storage.py). Recording is one transaction: the cells' outcomes
(models/db/finish.py), then the ledger, the analyses, the holds and the job's follow-ups
(models/db/finish_extras.py). Listeners hear of it after the commit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import ClaimedShard
from models.db.finish import CellFailure, CellResult
from models.db.finish_extras import AnalysisRecord
from models.db.leases import cancelled_jobs
from models.db.record_attempt import record_attempt
from models.db.session import statement_transactions
from models.domain.animagine import rating_of
from models.domain.cells import Cell
from models.domain.infotext import format_infotext, parameters_of
from models.domain.status import JobStatus
from models.domain.usage import shares_ms
from models.infra.held_storage import held_key
from models.infra.log_setup import log_context
from models.infra.settings import Settings
from models.infra.storage import Storage, image_key
from models.infra.storage_errors import StorageError
from worker.analysis import screening_scores
from worker.png import encode_png
from worker.renderer import receipt_of
from worker.tenant_cache import TenantCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderedShard:
    shard: ClaimedShard
    cells: list[Cell]  # the cells that rendered, in order with ``images``
    images: list[Image.Image]
    render_ms: int
    failures: list[CellFailure] = field(default_factory=list)
    analyses: list[AnalysisRecord] = field(default_factory=list)  # worker/analysis.py


class ShardListener(Protocol):
    """Told what landed, on the writer thread, after the database commit."""

    def cells_recorded(self, shard: ClaimedShard, results: list[CellResult]) -> None: ...

    def job_finished(self, shard: ClaimedShard, status: JobStatus) -> None: ...


class ShardWriter:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        storage: Storage,
        worker_id: str,
        listeners: list[ShardListener],
        tenants: TenantCache,
        device_for: Callable[[str], str],
        release: Callable[[ClaimedShard], None],
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.worker_id = worker_id
        self.listeners = listeners
        self.tenants = tenants
        self.device_for = device_for
        self.release = release  # the runner stops holding the shard (its heartbeat)

    def write(self, rendered: RenderedShard) -> None:
        shard = rendered.shard
        cells = sorted([c.index for c in rendered.cells] + [f.index for f in rendered.failures])
        with log_context(job_id=str(shard.job_id), shard_id=shard.id, cells=cells):
            self._record(rendered)

    def _record(self, rendered: RenderedShard) -> None:
        shard = rendered.shard
        try:
            with statement_transactions(self.sessions) as session:  # one round trip
                if cancelled_jobs(session, job_ids=[shard.job_id]):
                    return  # cancel settled: nothing new lands in storage
            results, failures, refused = self._upload(rendered)
            # Storage refused every failed cell for good (bad keys, no bucket): another
            # render would be refused too, so this attempt is their last.
            last = bool(refused) and len(refused) == len(failures)

            completion, final = record_attempt(
                self.sessions,
                analyses=rendered.analyses,
                device=self.device_for(shard.model),
                progress_min_interval_s=self.settings.webhook_progress_min_interval_s,
                shard=shard,
                worker=self.worker_id,
                results=results,
                failures=failures,
                max_attempts=1 if last else self.settings.max_attempts,
                backoff_s=self.settings.retry_backoff_s,
            )
        except Exception:
            # The database is away: the lease lapses and the reconciler re-queues the shard.
            log.exception("could not record shard %s of job %s", shard.id, shard.job_id)
            return
        finally:
            self.release(shard)
        log.info(
            "shard %s of job %s: %d recorded, %d failed, rendered in %d ms",
            shard.id,
            shard.job_id,
            completion.recorded,
            completion.failed,
            rendered.render_ms,
            extra={"recorded": completion.recorded, "render_ms": rendered.render_ms},
        )
        self._notify(shard, results, final)

    def _threshold(self, rendered: RenderedShard) -> float | None:
        """The tenant's screening threshold, if its images are screened here."""
        if not rendered.cells:
            return None
        return self.tenants.policy(rendered.shard.tenant_id).screening_threshold

    def _upload(
        self, rendered: RenderedShard
    ) -> tuple[list[CellResult], list[CellFailure], set[int]]:
        """What landed, what failed, and which failures storage refused for good."""
        shard = rendered.shard
        shares = shares_ms(rendered.render_ms, len(rendered.cells))  # each cell's GPU time
        threshold = self._threshold(rendered)
        scores = screening_scores(rendered.analyses)
        results: list[CellResult] = []
        failures = list(rendered.failures)
        refused: set[int] = set()
        for cell, image, render_ms in zip(rendered.cells, rendered.images, shares, strict=True):
            score = scores.get(cell.index)
            if threshold is not None and score is None:  # screening did not run: fail closed
                failures.append(CellFailure(cell.index, "screening did not run on this image"))
                continue
            held = threshold is not None and score is not None and score > threshold
            try:
                png = encode_png(
                    image,
                    parameters=format_infotext(parameters_of(cell, shard.model, receipt_of(image))),
                    compress_level=self.settings.png_compress_level,
                )
                key = self._key(shard, cell, held=held)
                self.storage.put(key, png, content_type="image/png")
            except StorageError as exc:  # permanent, or transient after its own retries
                log.error("upload failed: shard %s cell %s: %s", shard.id, cell.index, exc)
                if exc.permanent:
                    refused.add(cell.index)
                failures.append(CellFailure(cell.index, f"upload failed: {exc}"))
                continue
            except Exception as exc:  # storage down after its own retries: try the cell later
                log.exception("upload failed: shard %s cell %s", shard.id, cell.index)
                failures.append(CellFailure(cell.index, f"upload failed: {exc!r}"))
                continue
            digest = hashlib.sha256(png).hexdigest()
            rating = rating_of(cell.prompt)
            results.append(CellResult(cell.index, key, digest, rating, render_ms, image, held))
        return results, failures, refused

    def _key(self, shard: ClaimedShard, cell: Cell, *, held: bool) -> str:
        prefix = self.settings.s3_prefix
        key = image_key(
            prefix=prefix,
            tenant_id=shard.tenant_id,
            job_id=shard.job_id,
            index=cell.index,
            bucket=cell.bucket,
            seed=cell.seed,
        )
        if held:
            return held_key(key, prefix=prefix, tenant_id=shard.tenant_id, job_id=shard.job_id)
        return key

    def _notify(
        self, shard: ClaimedShard, results: list[CellResult], finished: JobStatus | None
    ) -> None:
        for listener in self.listeners:
            try:
                if results:
                    listener.cells_recorded(shard, results)
                if finished is not None:
                    listener.job_finished(shard, finished)
            except Exception:  # a listener (sheet, metric) must never lose a shard
                log.exception("listener %r failed for shard %s", listener, shard.id)
