"""Contact sheets: when each prompt's sheet is redrawn, and how it is drawn.

A prompt's sheet is drawn when its last cell lands, and while it renders at most
every ``interval_s``, never taking more than a tenth of the artifacts thread's
time. It is composed from thumbnails, so any worker can draw any sheet.
"""

from __future__ import annotations

import io
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from models.db.artifacts import SheetCell
from models.domain.buckets import parse_bucket
from models.domain.status import CellStatus
from worker.contact_sheet import compose_sheet, encode_sheet
from worker.job_layout import JobLayout

SheetId = tuple[uuid.UUID, int]  # job, prompt index


@dataclass
class SheetState:
    dirty: bool = False  # cells landed since it was last drawn
    composed_at: float = -math.inf  # monotonic seconds
    cost_s: float = 0.0  # what drawing it took last time
    complete: bool = False  # every cell of the prompt is settled


class SheetSchedule:
    """Which sheets are due, and how long the thread may wait for the next one."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._sheets: dict[SheetId, SheetState] = {}

    def landed(self, sheet: SheetId, *, complete: bool) -> None:
        state = self._sheets.setdefault(sheet, SheetState())
        state.dirty = True
        if complete and not state.complete:
            state.complete = True
            state.composed_at = -math.inf  # the prompt's last cell: draw it now

    def due(self, *, force: bool = False) -> list[SheetId]:
        now = self.clock()
        dirty = self._dirty()
        return [
            sheet
            for sheet, state in self._sheets.items()
            if state.dirty and (force or now >= self._due_at(state, dirty))
        ]

    def wait_s(self) -> float | None:
        """Seconds until the next sheet is due; None while none is dirty."""
        dirty = self._dirty()
        due = [self._due_at(s, dirty) for s in self._sheets.values() if s.dirty]
        if not due:
            return None
        return max(0.01, min(due) - self.clock())

    def drawing(self, sheet: SheetId) -> None:
        # Clean from the start: a sheet whose drawing fails waits for its next cells.
        self._sheets.setdefault(sheet, SheetState()).dirty = False

    def drawn(self, sheet: SheetId, *, cost_s: float) -> None:
        state = self._sheets.setdefault(sheet, SheetState())
        state.composed_at = self.clock()
        state.cost_s = cost_s

    def forget(self, job_id: uuid.UUID) -> None:
        for sheet in [s for s in self._sheets if s[0] == job_id]:
            del self._sheets[sheet]

    def _dirty(self) -> int:
        return sum(s.dirty for s in self._sheets.values())

    def _due_at(self, state: SheetState, dirty: int) -> float:
        # Each of the ``dirty`` sheets waits ten times its cost per sheet kept current:
        # all of them together take at most a tenth of this thread's time (a grid of
        # many long prompts would otherwise spend it all redrawing sheets).
        return state.composed_at + max(self.interval_s, 10 * state.cost_s * max(1, dirty))


def draw_sheet(
    layout: JobLayout,
    prompt: int,
    cells: list[SheetCell],
    *,
    rows_shown: int,
    thumbnail: Callable[[SheetCell], bytes | None],
) -> bytes:
    """The prompt's sheet as a JPEG: a thumbnail per done cell, the status of the others."""
    shown: dict[tuple[int, int], Image.Image | str] = {}
    done = 0
    for cell in cells:
        position = layout.sheet_position(cell.index)
        if cell.status == CellStatus.DONE and cell.key:
            data = thumbnail(cell)
            if data is not None:
                shown[position] = Image.open(io.BytesIO(data))
                done += 1
            else:
                shown[position] = "missing"
        elif cell.status != CellStatus.QUEUED:
            shown[position] = str(cell.status)
    sizes = [parse_bucket(b) for b in layout.buckets_for(prompt)]
    sheet = compose_sheet(
        title=f"prompt {prompt + 1} of {len(layout.prompts)} · {layout.prompts[prompt]}",
        column_labels=[b.name for b in sizes],
        column_sizes=[(b.width, b.height) for b in sizes],
        row_labels=[f"seed {s}" for s in layout.seeds_for(prompt)[:rows_shown]],
        cells=shown,
        footer=_footer(layout, done=done, rows_shown=rows_shown, columns=len(sizes)),
    )
    return encode_sheet(sheet)


def _footer(layout: JobLayout, *, done: int, rows_shown: int, columns: int) -> str:
    seeds, variants = len(layout.seeds), layout.variants
    footer = f"{done} of {rows_shown * columns} images · {layout.model}"
    if rows_shown < seeds:
        footer += f" · first {rows_shown} of {seeds} seeds (all are in the gallery)"
    if variants > 1:
        footer += f" · first of {variants} variants per cell (all are in the gallery)"
    return footer
