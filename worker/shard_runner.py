"""One shard, start to finish: claim → render → (writer) encode, upload, record."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from models.animagine import rating_of
from models.infotext import RenderParameters, format_infotext
from models.queue import Publisher
from models.settings import Settings
from models.shard_store import (
    CellResult,
    ClaimedShard,
    claim_shard,
    complete_shard,
    fail_shard,
    job_is_cancelled,
    shard_cells,
)
from models.status import JobStatus
from models.storage import Storage, image_key
from models.tables import Item
from worker.output import OutputStage
from worker.png import encode_png
from worker.renderer import RenderBatch, Renderer

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    NOT_CLAIMED = "not_claimed"  # duplicate delivery, cancelled or already done
    RENDERED = "rendered"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True)
class CellParams:
    """What the writer needs of a cell, detached from the DB session."""

    index: int
    parameters: RenderParameters

    @classmethod
    def of(cls, item: Item, model: str) -> CellParams:
        return cls(
            item.index,
            RenderParameters(
                prompt=item.prompt,
                negative_prompt=item.negative_prompt,
                steps=item.steps,
                sampler=item.sampler,
                guidance_scale=item.guidance_scale,
                seed=item.seed,
                width=item.width,
                height=item.height,
                model=model,
            ),
        )


@dataclass(frozen=True)
class RenderedShard:
    shard: ClaimedShard
    cells: list[CellParams]
    images: list[Image.Image]
    render_ms: int


class ShardListener(Protocol):
    """Told what landed, on the writer thread, after the database commit."""

    def cells_recorded(self, shard: ClaimedShard, results: list[CellResult]) -> None: ...

    def job_finished(self, shard: ClaimedShard, status: JobStatus) -> None: ...


class ShardRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        storage: Storage,
        renderer_for: Callable[[str], Renderer],
        publisher: Publisher,
        worker_id: str,
        max_attempts: int = 3,
        listeners: list[ShardListener] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.renderer_for = renderer_for
        self.publisher = publisher
        self.worker_id = worker_id
        self.max_attempts = max_attempts
        self.listeners = list(listeners or [])
        self.output: OutputStage[RenderedShard] = OutputStage(self._write, name="shard-writer")

    def run(self, shard_id: int) -> Outcome:
        with self.sessions.begin() as session:
            shard = claim_shard(
                session,
                shard_id=shard_id,
                worker=self.worker_id,
                lease_s=self.settings.shard_lease_s,
            )
            if shard is None:
                return Outcome.NOT_CLAIMED
            cells = [CellParams.of(item, shard.model) for item in shard_cells(session, shard=shard)]
        if not cells:
            return self._finish(shard, [])
        first = cells[0].parameters
        batch = RenderBatch(
            prompts=[c.parameters.prompt for c in cells],
            negative_prompts=[c.parameters.negative_prompt for c in cells],
            seeds=[c.parameters.seed for c in cells],
            width=first.width,
            height=first.height,
            steps=first.steps,
            guidance_scale=first.guidance_scale,
            sampler=first.sampler,
        )
        started = time.perf_counter()
        try:
            images = self.renderer_for(shard.model).render(batch)
        except Exception as exc:
            log.exception("render failed: shard %s of job %s", shard.id, shard.job_id)
            return self._fail(shard, f"render failed: {exc!r}")
        render_ms = int((time.perf_counter() - started) * 1000)
        self.output.submit(RenderedShard(shard, cells, images, render_ms))
        return Outcome.RENDERED

    def close(self) -> None:
        """Finish writing what was rendered (graceful shutdown)."""
        self.output.close()

    def _write(self, rendered: RenderedShard) -> None:
        shard = rendered.shard
        with self.sessions() as session:
            if job_is_cancelled(session, job_id=shard.job_id):
                return  # cancel settled: nothing new lands in storage
        per_image_ms = rendered.render_ms // max(1, len(rendered.cells))
        results: list[CellResult] = []
        try:
            for cell, image in zip(rendered.cells, rendered.images, strict=True):
                png = encode_png(
                    image,
                    parameters=format_infotext(cell.parameters),
                    compress_level=self.settings.png_compress_level,
                )
                key = image_key(
                    prefix=self.settings.s3_prefix,
                    tenant_id=shard.tenant_id,
                    job_id=shard.job_id,
                    index=cell.index,
                    bucket=f"{cell.parameters.width}x{cell.parameters.height}",
                    seed=cell.parameters.seed,
                )
                self.storage.put(key, png, content_type="image/png")
                results.append(
                    CellResult(
                        cell.index,
                        key,
                        hashlib.sha256(png).hexdigest(),
                        rating_of(cell.parameters.prompt),
                        per_image_ms,
                    )
                )
        except Exception as exc:
            log.exception("upload failed: shard %s of job %s", shard.id, shard.job_id)
            self._fail(shard, f"upload failed: {exc!r}")
            return
        self._finish(shard, results)

    def _finish(self, shard: ClaimedShard, results: list[CellResult]) -> Outcome:
        with self.sessions.begin() as session:
            completion = complete_shard(
                session, shard=shard, worker=self.worker_id, results=results
            )
        self._notify(shard, results, completion.job_status)
        return Outcome.RENDERED

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

    def _fail(self, shard: ClaimedShard, error: str) -> Outcome:
        retry = shard.attempts < self.max_attempts
        with self.sessions.begin() as session:
            finished = fail_shard(
                session, shard=shard, worker=self.worker_id, error=error, retry=retry
            )
        self._notify(shard, [], finished)
        if retry:
            self.publisher.publish(model=shard.model, shard_ids=[shard.id])
            return Outcome.RETRYING
        return Outcome.FAILED
