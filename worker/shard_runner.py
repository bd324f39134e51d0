"""One shard, start to finish: claim → render → (analysis thread) analyze → (writer thread)
encode, upload, record (worker/shard_writer.py)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import StrEnum

from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from models.db.claim_cells import claim_with_cells
from models.db.claims import ClaimedShard
from models.db.finish import CellFailure
from models.db.session import retry_on_disconnect, statement_transactions
from models.domain.cells import Cell
from models.infra.log_setup import log_context
from models.infra.settings import Settings
from models.infra.storage import Storage
from worker.analysis import ImageAnalyzer, analyze_images
from worker.heartbeat import Heartbeat
from worker.lora_adapters import active_adapters
from worker.lora_store import LoraLoadError
from worker.output import OutputStage
from worker.refine_base import batch_with_bases
from worker.renderer import RenderBatch, Renderer, RendererFor, RenderInterrupted
from worker.shard_writer import RenderedShard, ShardListener, ShardWriter
from worker.tenant_cache import TenantCache

__all__ = ["Outcome", "RenderedShard", "ShardListener", "ShardRunner", "batch_of"]

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    NOTHING = "nothing"  # no shard was waiting: a duplicate or surplus token
    RENDERED = "rendered"
    CANCELLED = "cancelled"


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
        analyzers: Sequence[ImageAnalyzer] = (),
        device_for: Callable[[str], str] = lambda _model: "unknown",
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.renderer_for = renderer_for
        self.worker_id = worker_id
        self.listeners = list(listeners or [])
        self.analyzers = list(analyzers)
        self._held: dict[int, uuid.UUID] = {}  # shard id -> job id, claimed and unfinished
        self._cancelled: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        # LoRA affinity, per model: the set its renderer has active (None: unknown), and
        # claims in a row that passed over fair share's job for it (bounded by the
        # look-ahead, so a job of another set waits at most that many claims).
        self._adapters: dict[str, str | None] = {}
        self._passed_over: dict[str, int] = {}
        self.writer = ShardWriter(
            settings=settings,
            sessions=sessions,
            storage=storage,
            worker_id=worker_id,
            listeners=self.listeners,
            tenants=TenantCache(sessions),
            device_for=device_for,
            release=self._release,
        )
        self.output: OutputStage[RenderedShard] = OutputStage(
            self.writer.write, name="shard-writer"
        )
        # Analysis overlaps the next render: a thread of its own between render and writer.
        self.analysis: OutputStage[RenderedShard] | None = (
            OutputStage(self._analyze, name="analysis") if self.analyzers else None
        )
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
        lookahead = self.settings.lora_affinity_lookahead
        prefer = self._adapters.get(model)
        if self._passed_over.get(model, 0) >= lookahead:
            prefer = None  # fair share's job, this time

        def claim() -> tuple[ClaimedShard, list[Cell]] | None:
            # The claim commits as it ends, its cells read in the same round trip.
            with statement_transactions(self.sessions) as session:
                return claim_with_cells(
                    session,
                    model=model,
                    worker=self.worker_id,
                    lease_s=self.settings.shard_lease_s,
                    adapters=prefer,
                    lookahead=lookahead,
                )

        claimed = retry_on_disconnect(claim)
        if claimed is None:
            return Outcome.NOTHING
        shard, cells = claimed
        self._passed_over[model] = self._passed_over.get(model, 0) + 1 if shard.passed_over else 0
        self._hold(shard)
        indices = [c.index for c in cells]
        with log_context(job_id=str(shard.job_id), shard_id=shard.id, cells=indices):
            return self._render_claimed(shard, cells)

    def _render_claimed(self, shard: ClaimedShard, cells: list[Cell]) -> Outcome:
        if not cells:
            self._hand_off(RenderedShard(shard, [], [], 0))
            return Outcome.RENDERED
        try:
            renderer = self.renderer_for(shard.model, cells[0].quality_tier)
        except Exception as exc:  # the model cannot load here: fail the attempt, never hang
            log.exception("could not load model %s", shard.model)
            failures = [CellFailure(c.index, f"model failed to load: {exc!r}") for c in cells]
            self._hand_off(RenderedShard(shard, [], [], 0, failures))
            return Outcome.RENDERED

        def should_stop() -> bool:
            return shard.job_id in self._cancelled

        started = time.perf_counter()
        try:
            rendered = self._render(renderer, shard, cells, should_stop)
        except LoraLoadError as exc:  # every cell of the shard has the set: all fail
            log.warning("shard %s: %s", shard.id, exc)
            failures = [CellFailure(c.index, f"LoRA failed to load: {exc}") for c in cells]
            rendered = RenderedShard(shard, [], [], 0, failures)
        except RenderInterrupted:
            log.info("job %s cancelled: stopped shard %s mid-render", shard.job_id, shard.id)
            self._release(shard)
            return Outcome.CANCELLED
        finally:
            self._adapters[shard.model] = active_adapters(renderer)
        render_ms = int((time.perf_counter() - started) * 1000)
        self._hand_off(
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
            batch = batch_with_bases(self.sessions, self.storage, cells)  # a refinement's
            return RenderedShard(shard, cells, renderer.render(batch, should_stop), 0)
        except (RenderInterrupted, LoraLoadError):
            raise
        except Exception as exc:
            if len(cells) == 1:
                log.exception("render failed: shard %s cell %s", shard.id, cells[0].index)
                return RenderedShard(shard, [], [], 0, [CellFailure(cells[0].index, repr(exc))])
        # One cell may be at fault (a prompt that breaks the pipeline): isolate it.
        log.warning("batch of shard %s failed; rendering its cells one by one", shard.id)
        done: list[Cell] = []
        images: list[Image.Image] = []
        failures: list[CellFailure] = []
        for cell in cells:
            try:
                one = batch_with_bases(self.sessions, self.storage, [cell])
                images += renderer.render(one, should_stop)
                done.append(cell)
            except RenderInterrupted:
                raise
            except Exception as exc:
                log.exception("render failed: shard %s cell %s", shard.id, cell.index)
                failures.append(CellFailure(cell.index, f"render failed: {exc!r}"))
        return RenderedShard(shard, done, images, 0, failures)

    def _hand_off(self, rendered: RenderedShard) -> None:
        """To the analysis thread if this worker analyzes images, else to the writer."""
        if self.analysis is not None and rendered.images:
            self.analysis.submit(rendered)
        else:
            self.output.submit(rendered)

    def _analyze(self, rendered: RenderedShard) -> None:
        """Analysis thread: every analyzer on the shard's images, then to the writer. A
        failure leaves the shard without analyses (the writer fails its cells where
        screening is required, and they are tried again)."""
        try:
            indexes = [c.index for c in rendered.cells]
            analyses = analyze_images(self.analyzers, rendered.images, indexes)
            rendered = replace(rendered, analyses=analyses)
        except Exception:
            log.exception("image analysis failed for shard %s", rendered.shard.id)
        self.output.submit(rendered)

    def close(self) -> None:
        """Finish writing what was rendered (graceful shutdown), then stop the heartbeat."""
        if self.analysis is not None:
            self.analysis.close()
        self.output.close()
        self.heartbeat.stop()

    def drain(self) -> None:
        if self.analysis is not None:
            self.analysis.drain()
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
