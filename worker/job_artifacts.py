"""A ShardListener that keeps a job's thumbnails, contact sheets, manifest and gallery current.

The writer thread only hands events over (microseconds per shard); everything
else runs on this listener's own thread, so the writer keeps pace with the GPU:

- per cell, a 256 px JPEG thumbnail from the in-memory image (``thumbs/``,
  worker/thumbnails.py);
- per prompt, its contact sheet, composed from thumbnails *in storage* (shards of
  one prompt may land on different workers), when the prompt's cells are all in,
  and while it renders at most every ``sheet_interval_s`` (worker/sheets.py);
- at job end, every sheet once more, each prompt's "best of" sheet by score
  (worker/best_of.py), then ``manifest.json`` and ``index.html`` (worker/job_end.py);
  again for a job whose held image an operator released.

Everything is a pure function of stored state, so any worker may (re)write it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from models.db.artifacts import SheetCell, job_cells, settled_per_prompt, sheet_cells
from models.db.claims import ClaimedShard
from models.db.finish import CellResult
from models.db.holds import artifacts_redrawn, claim_stale_artifacts
from models.domain.status import JobStatus
from models.infra.settings import Settings
from models.infra.storage import Storage, sheet_name
from worker.artifact_events import ArtifactCounters, Finished, Landed
from worker.best_of import write_best_sheets
from worker.environment import worker_environment
from worker.job_end import job_manifest, model_revision_of, write_job_files
from worker.job_layout import JobLayout, load_layout
from worker.sheets import SheetId, SheetSchedule, draw_sheet
from worker.stage import Stage
from worker.thumbnails import ThumbnailCache, store_thumbnail, stored_thumbnail

log = logging.getLogger(__name__)

MAX_BATCH = 64  # landed shards taken together when this thread falls behind
MAX_LAYOUTS = 64  # jobs this worker keeps current at once; the oldest is forgotten


class JobArtifacts:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        storage: Storage,
        model_revision: Callable[[str], str] | None = None,
        max_queued_images: int = 32,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.model_revision = model_revision or model_revision_of(settings)
        self.max_rows = settings.sheet_max_rows
        self.max_queued_images = max_queued_images
        self.counters = ArtifactCounters()
        self._queued_images = 0
        self._lock = threading.Lock()
        self._layouts: OrderedDict[uuid.UUID, JobLayout] = OrderedDict()
        self._thumbs = ThumbnailCache()
        self._sheets = SheetSchedule(settings.sheet_interval_s)
        # Unbounded: the writer never waits here (it sheds images instead, below).
        self._refreshed_at = -math.inf  # the first idle moment looks at once
        self._stage: Stage[Landed | Finished] = Stage(
            self._handle,
            name="job-artifacts",
            max_batch=MAX_BATCH,
            wait_s=lambda: min(self._sheets.wait_s() or math.inf, settings.artifact_refresh_s),
            on_idle=self._idle,
        )

    # -- ShardListener (writer thread): hand over, never block ---------------------

    def cells_recorded(self, shard: ClaimedShard, results: list[CellResult]) -> None:
        results = [r for r in results if not r.held]  # a held image is never shown
        if not results:
            return
        images = sum(r.image is not None for r in results)
        with self._lock:
            keep = self._queued_images + images <= self.max_queued_images
            if keep:
                self._queued_images += images
            else:  # far behind: let the thumbnail come from the stored PNG instead
                self.counters.stripped_images += images
        cells = [(r.index, r.key, r.image if keep else None) for r in results]
        self._stage.submit(Landed(shard.job_id, shard.tenant_id, cells, images if keep else 0))

    def job_finished(self, shard: ClaimedShard, status: JobStatus) -> None:
        self._stage.submit(Finished(shard.job_id, shard.tenant_id))

    def drain(self) -> None:
        """Wait until everything handed over so far is written."""
        self._stage.drain()

    def close(self) -> None:
        self._stage.close()
        # The thread has ended: the sheets still waiting for their turn are drawn now.
        self._guarded(partial(self._compose_due, force=True))

    # -- own thread ------------------------------------------------------------

    def _handle(self, events: list[Landed | Finished]) -> None:
        # Shards that landed while this thread was busy are taken together: one "which
        # prompts are complete" query per job, not one per shard. Order holds: a run of
        # landed shards is handled before the finished job that follows it.
        landed: list[Landed] = []
        for event in events:
            if isinstance(event, Landed):
                landed.append(event)
                continue
            self._landed_run(landed)
            landed = []
            self._guarded(partial(self._finished, event))
        self._landed_run(landed)
        self._idle()

    def _idle(self) -> None:
        self._guarded(self._compose_due)
        if time.monotonic() - self._refreshed_at >= self.settings.artifact_refresh_s:
            self._refreshed_at = time.monotonic()
            self._guarded(self._refresh_released)

    def _refresh_released(self) -> None:
        """Redraw a job whose held image an operator released (any worker may take it)."""
        with self.sessions.begin() as session:
            stale = claim_stale_artifacts(session)  # leased: back if this fails
        if stale is not None:
            self._forget(stale[0])  # its layout and thumbnails are read afresh
            self._finished(Finished(*stale))
            with self.sessions.begin() as session:
                artifacts_redrawn(session, job_id=stale[0])

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:  # sheets are a view: a failure must not stop the next ones
            log.exception("job artifacts step failed")

    def _timed(self, name: str, started: float) -> None:
        spent = self.counters.seconds.get(name, 0.0) + time.perf_counter() - started
        self.counters.seconds[name] = spent

    def _landed_run(self, events: list[Landed]) -> None:
        if not events:
            return
        self._guarded(partial(self._landed_all, events))
        with self._lock:
            self._queued_images -= sum(e.held for e in events)

    def _landed_all(self, events: list[Landed]) -> None:
        self.counters.landed_batches += 1
        by_job: dict[uuid.UUID, list[Landed]] = {}
        for event in events:
            by_job.setdefault(event.job_id, []).append(event)
        for same_job in by_job.values():
            self._landed(same_job)

    def _landed(self, events: list[Landed]) -> None:
        """Cells of one job landed (one or more shards): thumbnails, then sheet states."""
        first = events[0]
        layout = self._layout(first.job_id, first.tenant_id)
        if layout is None:
            return
        touched: set[int] = set()
        for index, key, image in [cell for event in events for cell in event.cells]:
            touched.add(layout.prompt_of(index))
            if image is None:
                continue
            started = time.perf_counter()
            data = store_thumbnail(self.storage, layout.thumb_key(key), image)
            self._thumbs.put(first.job_id, index, data)
            self.counters.thumbs += 1
            self._timed("thumbs", started)
        with self.sessions() as session:
            settled = settled_per_prompt(session, job_id=first.job_id, prompts=touched)
        for prompt in touched:
            complete = settled.get(prompt, 0) >= layout.per_prompt
            self._sheets.landed((first.job_id, prompt), complete=complete)

    def _compose_due(self, force: bool = False) -> None:
        for sheet in self._sheets.due(force=force):
            layout = self._layouts.get(sheet[0])
            if layout is None:  # forgotten (finished, or evicted): nothing to keep current
                self._sheets.forget(sheet[0])
            else:
                self._compose(sheet, layout)

    def _finished(self, event: Finished) -> None:
        layout = self._layout(event.job_id, event.tenant_id)
        if layout is None:
            return
        started = time.perf_counter()
        for prompt in range(len(layout.prompts)):
            self._compose((event.job_id, prompt), layout)
        k = self.settings.best_of_k
        with self.sessions() as session:
            items = job_cells(session, job_id=event.job_id)
        thumbnail = partial(self._thumbnail, event.job_id, layout)
        best = partial(write_best_sheets, self.storage, layout, items, k=k, thumbnail=thumbnail)
        self._guarded(best)  # a view like the others: its failure stops nothing
        with self.sessions() as session:
            manifest = job_manifest(
                session,
                job_id=event.job_id,
                folder=layout.folder,
                model_revision=self.model_revision,
                environment=worker_environment(self.settings.device),
                best_of_k=k,
            )
        if manifest is None:
            return
        write_job_files(self.storage, folder=layout.folder, manifest=manifest)
        self.counters.jobs_finished += 1
        self._timed("job_end", started)
        self._forget(event.job_id)

    # -- contact sheets --------------------------------------------------------

    def _compose(self, sheet: SheetId, layout: JobLayout) -> None:
        job_id, prompt = sheet
        started = time.perf_counter()
        self._sheets.drawing(sheet)
        rows_shown = min(len(layout.seeds), self.max_rows)
        with self.sessions() as session:
            cells = sheet_cells(
                session,
                job_id=job_id,
                prompt=prompt,
                variants=layout.variants,  # the first variant (sub-grids: later)
                seeds=len(layout.seeds),
                rows=rows_shown,
            )
        data = draw_sheet(
            layout,
            prompt,
            cells,
            rows_shown=rows_shown,
            thumbnail=partial(self._thumbnail, job_id, layout),
        )
        self.storage.put(f"{layout.folder}/{sheet_name(prompt)}", data, content_type="image/jpeg")
        self._sheets.drawn(sheet, cost_s=time.perf_counter() - started)
        self.counters.sheets += 1
        self._timed("sheets", started)

    def _thumbnail(self, job_id: uuid.UUID, layout: JobLayout, cell: SheetCell) -> bytes | None:
        data = self._thumbs.get(job_id, cell.index)
        if data is None and cell.key:
            thumb_key = layout.thumb_key(cell.key)
            data = stored_thumbnail(self.storage, thumb_key=thumb_key, image_key=cell.key)
            if data is not None:
                self._thumbs.put(job_id, cell.index, data)
        return data

    # -- what this worker keeps per job ----------------------------------------

    def _layout(self, job_id: uuid.UUID, tenant_id: uuid.UUID) -> JobLayout | None:
        layout = self._layouts.get(job_id)
        if layout is None:
            with self.sessions() as session:
                layout = load_layout(
                    session, job_id=job_id, tenant_id=tenant_id, prefix=self.settings.s3_prefix
                )
            if layout is None:
                return None
            self._layouts[job_id] = layout
            while len(self._layouts) > MAX_LAYOUTS:
                self._forget(next(iter(self._layouts)))
        return layout

    def _forget(self, job_id: uuid.UUID) -> None:
        self._layouts.pop(job_id, None)
        self._sheets.forget(job_id)
        self._thumbs.forget(job_id)
