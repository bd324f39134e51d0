"""A ShardListener that keeps a job's thumbnails, contact sheets, manifest and gallery current.

The writer thread only hands events over (microseconds per shard); everything
else runs on this listener's own thread, so the writer keeps pace with the GPU:

- per cell, a 256 px JPEG thumbnail from the in-memory image (``thumbs/``);
- per prompt, its contact sheet, composed from thumbnails *in storage* (shards of
  one prompt may land on different workers), when the prompt's cells are all in,
  and while it renders at most every ``sheet_interval_s`` (and never more than a
  tenth of this thread's time);
- at job end, every sheet once more, then ``manifest.json`` and ``index.html``.

Everything is a pure function of stored state, so any worker may (re)write it.
"""

from __future__ import annotations

import io
import logging
import math
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial

from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.claims import ClaimedShard
from models.db.finish import CellResult
from models.db.tables import Item, Job
from models.domain.buckets import parse_bucket
from models.domain.status import CellStatus, JobStatus
from models.infra.settings import Settings
from models.infra.storage import (
    GALLERY_NAME,
    MANIFEST_NAME,
    Storage,
    job_folder,
    sheet_name,
    thumb_name,
)
from worker.contact_sheet import compose_sheet, encode_sheet, make_thumbnail
from worker.gallery import build_gallery
from worker.manifest import build_manifest, encode_manifest, relative_file

log = logging.getLogger(__name__)

MAX_BATCH = 64  # landed shards taken together when this thread falls behind
THUMB_CACHE_BYTES = 64 * 2**20  # this worker's recent thumbnails, so sheets rarely re-read them
_STOP = object()


@dataclass(frozen=True)
class _Landed:
    job_id: uuid.UUID
    tenant_id: uuid.UUID
    cells: list[tuple[int, str, Image.Image | None]]  # index, image key, image (if kept)
    held: int  # images this event keeps in memory


@dataclass(frozen=True)
class _Finished:
    job_id: uuid.UUID
    tenant_id: uuid.UUID


@dataclass(frozen=True)
class _Layout:
    folder: str
    prompts: list[str]  # as the client wrote them (sheet titles)
    buckets: list[str]
    seeds: list[int]
    model: str
    variants: int  # cells per (prompt, bucket, seed): the innermost axes (sampler, steps, ...)

    def prompt_of(self, index: int) -> int:
        return index // (len(self.buckets) * len(self.seeds) * self.variants)


@dataclass
class _SheetState:
    dirty: bool = False
    composed_at: float = -math.inf
    cost_s: float = 0.0
    complete: bool = False


@dataclass
class _Counters:
    thumbs: int = 0
    sheets: int = 0
    jobs_finished: int = 0
    stripped_images: int = 0  # cells whose thumbnail had to come from the stored PNG
    landed_batches: int = 0  # times landed shards were handled (several at once when behind)
    seconds: dict[str, float] = field(default_factory=dict)


def model_revision_of(settings: Settings) -> Callable[[str], str]:
    """The manifest's model revision (see ``model_fingerprint``), computed once per model."""

    @lru_cache(maxsize=16)
    def revision(name: str) -> str:
        source = settings.models.get(name, name)
        if source.startswith("simulated"):
            return source  # no weights; don't import torch for it
        try:
            from worker.model_loading import model_fingerprint, parse_model_source

            return model_fingerprint(parse_model_source(source), cache_dir=settings.models_dir)
        except Exception:
            log.exception("no revision for model %s", name)
            return "unknown"

    return revision


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
        self.interval_s = settings.sheet_interval_s
        self.max_rows = settings.sheet_max_rows
        self.max_queued_images = max_queued_images
        self.counters = _Counters()
        self._queue: queue.Queue[object] = queue.Queue()
        self._queued_images = 0
        self._lock = threading.Lock()
        self._layouts: OrderedDict[uuid.UUID, _Layout] = OrderedDict()
        self._thumbs: OrderedDict[tuple[uuid.UUID, int], bytes] = OrderedDict()
        self._thumb_bytes = 0
        self._sheets: dict[tuple[uuid.UUID, int], _SheetState] = {}
        self._thread = threading.Thread(target=self._loop, name="job-artifacts", daemon=True)
        self._thread.start()

    # -- ShardListener (writer thread): hand over, never block ---------------------

    def cells_recorded(self, shard: ClaimedShard, results: list[CellResult]) -> None:
        images = sum(r.image is not None for r in results)
        with self._lock:
            keep = self._queued_images + images <= self.max_queued_images
            if keep:
                self._queued_images += images
            else:  # far behind: let the thumbnail come from the stored PNG instead
                self.counters.stripped_images += images
        cells = [(r.index, r.key, r.image if keep else None) for r in results]
        self._queue.put(_Landed(shard.job_id, shard.tenant_id, cells, images if keep else 0))

    def job_finished(self, shard: ClaimedShard, status: JobStatus) -> None:
        self._queue.put(_Finished(shard.job_id, shard.tenant_id))

    def drain(self) -> None:
        """Wait until everything handed over so far is written."""
        self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    # -- own thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            try:
                event = self._queue.get(timeout=self._wait_s())
            except queue.Empty:
                self._guarded(self._compose_due)
                continue
            # Shards that landed while this thread was busy are taken together: one
            # "which prompts are complete" query per job, not one per shard. Only the
            # last event taken can be something else (it ends the batch), so order holds.
            events: list[object] = [event]
            while isinstance(events[-1], _Landed) and len(events) < MAX_BATCH:
                try:
                    events.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                landed = [e for e in events if isinstance(e, _Landed)]
                if landed:
                    self._guarded(partial(self._landed_all, landed))
                    with self._lock:
                        self._queued_images -= sum(e.held for e in landed)
                last = events[-1]
                if last is _STOP:
                    self._guarded(partial(self._compose_due, force=True))
                    return
                if isinstance(last, _Finished):
                    self._guarded(partial(self._finished, last))
                self._guarded(self._compose_due)
            finally:
                for _ in events:
                    self._queue.task_done()

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:  # sheets are a view: a failure must not stop the next ones
            log.exception("job artifacts step failed")

    def _timed(self, name: str, started: float) -> None:
        spent = self.counters.seconds.get(name, 0.0) + time.perf_counter() - started
        self.counters.seconds[name] = spent

    def _wait_s(self) -> float | None:
        dirty = self._dirty_sheets()
        due = [self._due_at(s, dirty) for s in self._sheets.values() if s.dirty]
        if not due:
            return None
        return max(0.01, min(due) - time.monotonic())

    def _dirty_sheets(self) -> int:
        return sum(s.dirty for s in self._sheets.values())

    def _due_at(self, state: _SheetState, dirty: int) -> float:
        # Each of the ``dirty`` sheets waits ten times its cost per sheet kept current:
        # all of them together take at most a tenth of this thread's time (a grid of
        # many long prompts would otherwise spend it all redrawing sheets).
        return state.composed_at + max(self.interval_s, 10 * state.cost_s * max(1, dirty))

    def _landed_all(self, events: list[_Landed]) -> None:
        self.counters.landed_batches += 1
        by_job: dict[uuid.UUID, list[_Landed]] = {}
        for event in events:
            by_job.setdefault(event.job_id, []).append(event)
        for same_job in by_job.values():
            self._landed(same_job)

    def _landed(self, events: list[_Landed]) -> None:
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
            data = make_thumbnail(image)
            thumb = f"{layout.folder}/{thumb_name(relative_file(key, layout.folder))}"
            self.storage.put(thumb, data, content_type="image/jpeg")
            self._remember(first.job_id, index, data)
            self.counters.thumbs += 1
            self._timed("thumbs", started)
        complete = self._complete_prompts(first.job_id, layout, touched)
        for prompt in touched:
            state = self._sheets.setdefault((first.job_id, prompt), _SheetState())
            state.dirty = True
            if prompt in complete and not state.complete:
                state.complete = True
                state.composed_at = -math.inf  # the prompt's last cell: compose now

    def _complete_prompts(self, job_id: uuid.UUID, layout: _Layout, prompts: set[int]) -> set[int]:
        per_prompt = len(layout.buckets) * len(layout.seeds) * layout.variants
        with self.sessions() as session:
            rows = session.execute(
                select(Item.prompt_index, func.count())
                .where(
                    Item.job_id == job_id,
                    Item.prompt_index.in_(prompts),
                    Item.status != CellStatus.QUEUED,
                )
                .group_by(Item.prompt_index)
            ).all()
        return {prompt for prompt, count in rows if count >= per_prompt}

    def _compose_due(self, force: bool = False) -> None:
        now = time.monotonic()
        dirty = self._dirty_sheets()
        for (job_id, prompt), state in list(self._sheets.items()):
            if state.dirty and (force or now >= self._due_at(state, dirty)):
                layout = self._layouts.get(job_id)
                if layout is None:  # forgotten (finished, or evicted): nothing to keep current
                    del self._sheets[(job_id, prompt)]
                else:
                    self._compose(job_id, prompt, layout, state)

    def _finished(self, event: _Finished) -> None:
        layout = self._layout(event.job_id, event.tenant_id)
        if layout is None:
            return
        started = time.perf_counter()
        for prompt in range(len(layout.prompts)):
            state = self._sheets.setdefault((event.job_id, prompt), _SheetState())
            self._compose(event.job_id, prompt, layout, state)
        with self.sessions() as session:
            job = session.get(Job, event.job_id)
            if job is None:
                return
            items = list(session.scalars(select(Item).where(Item.job_id == job.id)))
            manifest = build_manifest(
                job=job,
                items=items,
                folder=layout.folder,
                model_revision=self.model_revision(job.model),
            )
        self.storage.put(
            f"{layout.folder}/{MANIFEST_NAME}",
            encode_manifest(manifest),
            content_type="application/json",
        )
        self.storage.put(
            f"{layout.folder}/{GALLERY_NAME}",
            build_gallery(manifest).encode(),
            content_type="text/html; charset=utf-8",
        )
        self.counters.jobs_finished += 1
        self._timed("job_end", started)
        self._forget(event.job_id)

    # -- contact sheets --------------------------------------------------------

    def _compose(self, job_id: uuid.UUID, prompt: int, layout: _Layout, state: _SheetState) -> None:
        started = time.perf_counter()
        state.dirty = False
        seeds, variants = len(layout.seeds), layout.variants
        rows_shown = min(seeds, self.max_rows)
        with self.sessions() as session:
            items = session.execute(
                select(Item.index, Item.status, Item.key)
                .where(
                    Item.job_id == job_id,
                    Item.prompt_index == prompt,
                    (Item.index % variants) == 0,  # the first variant (sub-grids: later)
                    (Item.index // variants % seeds) < rows_shown,
                )
                .order_by(Item.index)
            ).all()
        cells: dict[tuple[int, int], Image.Image | str] = {}
        done = 0
        for index, status, key in items:
            position = (index // variants % seeds, index // variants // seeds % len(layout.buckets))
            if status == CellStatus.DONE and key:
                data = self._thumbnail(job_id, index, key, layout)
                if data is not None:
                    cells[position] = Image.open(io.BytesIO(data))
                    done += 1
                else:
                    cells[position] = "missing"
            elif status != CellStatus.QUEUED:
                cells[position] = str(status)
        sizes = [parse_bucket(b) for b in layout.buckets]
        footer = f"{done} of {rows_shown * len(sizes)} images · {layout.model}"
        if rows_shown < seeds:
            footer += f" · first {rows_shown} of {seeds} seeds (all are in the gallery)"
        if variants > 1:
            footer += f" · first of {variants} variants per cell (all are in the gallery)"
        sheet = compose_sheet(
            title=f"prompt {prompt + 1} of {len(layout.prompts)} · {layout.prompts[prompt]}",
            column_labels=[b.name for b in sizes],
            column_sizes=[(b.width, b.height) for b in sizes],
            row_labels=[f"seed {s}" for s in layout.seeds[:rows_shown]],
            cells=cells,
            footer=footer,
        )
        self.storage.put(
            f"{layout.folder}/{sheet_name(prompt)}", encode_sheet(sheet), content_type="image/jpeg"
        )
        state.composed_at = time.monotonic()
        state.cost_s = time.perf_counter() - started
        self.counters.sheets += 1
        self._timed("sheets", started)

    def _thumbnail(self, job_id: uuid.UUID, index: int, key: str, layout: _Layout) -> bytes | None:
        cached = self._thumbs.get((job_id, index))
        if cached is not None:
            return cached
        thumb = f"{layout.folder}/{thumb_name(relative_file(key, layout.folder))}"
        data = self._get(thumb)
        if data is None:  # made elsewhere and not (yet) uploaded, or handed over without image
            png = self._get(key)
            if png is None:
                return None
            data = make_thumbnail(Image.open(io.BytesIO(png)))
            self.storage.put(thumb, data, content_type="image/jpeg")
        self._remember(job_id, index, data)
        return data

    def _get(self, key: str) -> bytes | None:
        try:
            return self.storage.get(key)
        except Exception:  # missing (FileNotFoundError, S3 NoSuchKey) or unreachable
            return None

    # -- caches ----------------------------------------------------------------

    def _layout(self, job_id: uuid.UUID, tenant_id: uuid.UUID) -> _Layout | None:
        layout = self._layouts.get(job_id)
        if layout is None:
            with self.sessions() as session:
                job = session.get(Job, job_id)
                if job is None:
                    return None
                grid, spec = dict(job.grid), dict(job.spec)
                layout = _Layout(
                    folder=job_folder(
                        prefix=self.settings.s3_prefix, tenant_id=tenant_id, job_id=job_id
                    ),
                    prompts=list(spec.get("prompts") or grid["prompts"]),
                    buckets=list(grid["buckets"]),
                    seeds=list(grid["seeds"]),
                    model=job.model,
                    variants=max(
                        1,
                        job.total
                        // (len(grid["prompts"]) * len(grid["buckets"]) * len(grid["seeds"])),
                    ),
                )
            self._layouts[job_id] = layout
            while len(self._layouts) > 64:
                self._forget(next(iter(self._layouts)))
        return layout

    def _remember(self, job_id: uuid.UUID, index: int, data: bytes) -> None:
        self._thumbs[(job_id, index)] = data
        self._thumb_bytes += len(data)
        while self._thumb_bytes > THUMB_CACHE_BYTES:
            _, old = self._thumbs.popitem(last=False)
            self._thumb_bytes -= len(old)

    def _forget(self, job_id: uuid.UUID) -> None:
        self._layouts.pop(job_id, None)
        for key in [k for k in self._sheets if k[0] == job_id]:
            del self._sheets[key]
        for key in [k for k in self._thumbs if k[0] == job_id]:
            self._thumb_bytes -= len(self._thumbs.pop(key))
