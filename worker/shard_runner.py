"""One shard, start to finish: claim → render → (writer thread) encode, upload, record."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from models.db.cell_rows import queued_cells
from models.db.claims import ClaimedShard, claim_next_shard
from models.db.finish import CellFailure, CellResult, finish_attempt
from models.db.leases import cancelled_jobs
from models.domain.animagine import rating_of
from models.domain.cells import Cell
from models.domain.infotext import format_infotext, parameters_of
from models.domain.status import JobStatus
from models.infra.log_setup import log_context
from models.infra.settings import Settings
from models.infra.storage import Storage, image_key
from worker.heartbeat import Heartbeat
from worker.output import OutputStage
from worker.png import encode_png
from worker.renderer import (
    RenderBatch,
    Renderer,
    RendererFor,
    RenderInterrupted,
    receipt_of,
    split_batch,
)

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    NOTHING = "nothing"  # no shard was waiting: a duplicate or surplus token
    RENDERED = "rendered"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RenderedShard:
    shard: ClaimedShard
    cells: list[Cell]  # the cells that rendered, in order with ``images``
    images: list[Image.Image]
    render_ms: int
    failures: list[CellFailure] = field(default_factory=list)


class ShardListener(Protocol):
    """Told what landed, on the writer thread, after the database commit."""

    def cells_recorded(self, shard: ClaimedShard, results: list[CellResult]) -> None: ...

    def job_finished(self, shard: ClaimedShard, status: JobStatus) -> None: ...


def batch_of(cells: list[Cell]) -> RenderBatch:
    return RenderBatch(tuple(cells))


class ShardRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        storage: Storage,
        renderer_for: RendererFor,
        worker_id: str,
        listeners: list[ShardListener] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.renderer_for = renderer_for
        self.worker_id = worker_id
        self.listeners = list(listeners or [])
        self._held: dict[int, uuid.UUID] = {}  # shard id -> job id, claimed and unfinished
        self._cancelled: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self.output: OutputStage[RenderedShard] = OutputStage(self._write, name="shard-writer")
        self.heartbeat = Heartbeat(
            sessions=sessions,
            worker=worker_id,
            lease_s=settings.shard_lease_s,
            interval_s=settings.heartbeat_s,
            held=self._held_now,
            on_cancelled=self._mark_cancelled,
        )
        self.heartbeat.start()

    def run_next(self, model: str) -> Outcome:
        """Claim the shard fair share picks for ``model``, render it, hand it to the writer."""
        with self.sessions.begin() as session:
            shard = claim_next_shard(
                session, model=model, worker=self.worker_id, lease_s=self.settings.shard_lease_s
            )
            if shard is None:
                return Outcome.NOTHING
            cells = queued_cells(session, job_id=shard.job_id, shard_index=shard.index)
        self._hold(shard)
        indices = [c.index for c in cells]
        with log_context(job_id=str(shard.job_id), shard_id=shard.id, cells=indices):
            return self._render_claimed(shard, cells)

    def _render_claimed(self, shard: ClaimedShard, cells: list[Cell]) -> Outcome:
        if not cells:
            self.output.submit(RenderedShard(shard, [], [], 0))
            return Outcome.RENDERED
        try:
            renderer = self.renderer_for(shard.model, cells[0].quality_tier)
        except Exception as exc:  # the model cannot load here: fail the attempt, never hang
            log.exception("could not load model %s", shard.model)
            failures = [CellFailure(c.index, f"model failed to load: {exc!r}") for c in cells]
            self.output.submit(RenderedShard(shard, [], [], 0, failures))
            return Outcome.RENDERED

        def should_stop() -> bool:
            return shard.job_id in self._cancelled

        started = time.perf_counter()
        try:
            rendered = self._render(renderer, shard, cells, should_stop)
        except RenderInterrupted:
            log.info("job %s cancelled: stopped shard %s mid-render", shard.job_id, shard.id)
            self._release(shard)
            return Outcome.CANCELLED
        render_ms = int((time.perf_counter() - started) * 1000)
        self.output.submit(
            RenderedShard(shard, rendered.cells, rendered.images, render_ms, rendered.failures)
        )
        return Outcome.RENDERED

    def _render(
        self,
        renderer: Renderer,
        shard: ClaimedShard,
        cells: list[Cell],
        should_stop: Callable[[], bool],
    ) -> RenderedShard:
        try:
            return RenderedShard(shard, cells, renderer.render(batch_of(cells), should_stop), 0)
        except RenderInterrupted:
            raise
        except Exception as exc:
            if len(cells) == 1:
                log.exception("render failed: shard %s cell %s", shard.id, cells[0].index)
                return RenderedShard(shard, [], [], 0, [CellFailure(cells[0].index, repr(exc))])
        # One cell may be at fault (a prompt that breaks the pipeline): isolate it.
        log.warning("batch of shard %s failed; rendering its cells one by one", shard.id)
        batch = batch_of(cells)
        done: list[Cell] = []
        images: list[Image.Image] = []
        failures: list[CellFailure] = []
        for i, cell in enumerate(cells):
            try:
                images += renderer.render(split_batch(batch, i, i + 1), should_stop)
                done.append(cell)
            except RenderInterrupted:
                raise
            except Exception as exc:
                log.exception("render failed: shard %s cell %s", shard.id, cell.index)
                failures.append(CellFailure(cell.index, f"render failed: {exc!r}"))
        return RenderedShard(shard, done, images, 0, failures)

    def close(self) -> None:
        """Finish writing what was rendered (graceful shutdown), then stop the heartbeat."""
        self.output.close()
        self.heartbeat.stop()

    def drain(self) -> None:
        self.output.drain()

    # -- held shards (heartbeat) -------------------------------------------------

    def _hold(self, shard: ClaimedShard) -> None:
        with self._lock:
            self._held[shard.id] = shard.job_id

    def _release(self, shard: ClaimedShard) -> None:
        with self._lock:
            self._held.pop(shard.id, None)
            if shard.job_id not in self._held.values():
                self._cancelled.discard(shard.job_id)

    def _held_now(self) -> dict[int, uuid.UUID]:
        with self._lock:
            return dict(self._held)

    def _mark_cancelled(self, job_ids: set[uuid.UUID]) -> None:
        with self._lock:
            self._cancelled |= job_ids

    # -- writer thread ---------------------------------------------------------

    def _write(self, rendered: RenderedShard) -> None:
        shard = rendered.shard
        cells = sorted([c.index for c in rendered.cells] + [f.index for f in rendered.failures])
        with log_context(job_id=str(shard.job_id), shard_id=shard.id, cells=cells):
            self._record(rendered)

    def _record(self, rendered: RenderedShard) -> None:
        shard = rendered.shard
        try:
            with self.sessions() as session:
                if cancelled_jobs(session, job_ids=[shard.job_id]):
                    return  # cancel settled: nothing new lands in storage
            results, failures = self._upload(rendered)
            with self.sessions.begin() as session:
                completion = finish_attempt(
                    session,
                    shard=shard,
                    worker=self.worker_id,
                    results=results,
                    failures=failures,
                    max_attempts=self.settings.max_attempts,
                    backoff_s=self.settings.retry_backoff_s,
                )
        except Exception:
            # The database is away: the lease lapses and the reconciler re-queues the shard.
            log.exception("could not record shard %s of job %s", shard.id, shard.job_id)
            return
        finally:
            self._release(shard)
        log.info(
            "shard %s of job %s: %d recorded, %d failed, rendered in %d ms",
            shard.id,
            shard.job_id,
            completion.recorded,
            completion.failed,
            rendered.render_ms,
            extra={"recorded": completion.recorded, "render_ms": rendered.render_ms},
        )
        self._notify(shard, results, completion.job_status)

    def _upload(self, rendered: RenderedShard) -> tuple[list[CellResult], list[CellFailure]]:
        shard = rendered.shard
        per_image_ms = rendered.render_ms // max(1, len(rendered.cells))
        results: list[CellResult] = []
        failures = list(rendered.failures)
        for cell, image in zip(rendered.cells, rendered.images, strict=True):
            try:
                png = encode_png(
                    image,
                    parameters=format_infotext(parameters_of(cell, shard.model, receipt_of(image))),
                    compress_level=self.settings.png_compress_level,
                )
                key = image_key(
                    prefix=self.settings.s3_prefix,
                    tenant_id=shard.tenant_id,
                    job_id=shard.job_id,
                    index=cell.index,
                    bucket=cell.bucket,
                    seed=cell.seed,
                )
                self.storage.put(key, png, content_type="image/png")
            except Exception as exc:  # storage down after its own retries: try the cell later
                log.exception("upload failed: shard %s cell %s", shard.id, cell.index)
                failures.append(CellFailure(cell.index, f"upload failed: {exc!r}"))
                continue
            digest = hashlib.sha256(png).hexdigest()
            results.append(
                CellResult(cell.index, key, digest, rating_of(cell.prompt), per_image_ms, image)
            )
        return results, failures

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
