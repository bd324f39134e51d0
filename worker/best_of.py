"""Each prompt's "best of" sheet: its top ``FARM_BEST_OF_K`` images by score, across
seeds, buckets and the other axes, best first (``sheets/best_NNN.jpg``).

Drawn at job end beside the ordinary sheets, from the same stored state as the
manifest's ``best_of`` (worker/manifest.py ``ranked_items``), so the two, the images API's
``?order=score`` and the gallery's score view all agree. Columns are the ranks, each
as wide as its cell's bucket; the footer says which seed and bucket each rank is.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from models.db.artifacts import SheetCell
from models.db.tables import Item
from models.domain.buckets import parse_bucket
from models.infra.storage import Storage, best_sheet_name
from worker.contact_sheet import (
    CELL_HEIGHT,
    MARGIN,
    SheetLayout,
    compose_sheet,
    encode_sheet,
    font,
    plan_layout,
)
from worker.job_layout import JobLayout
from worker.manifest import ranked_items


@dataclass(frozen=True)
class BestSheet:
    """What a best-of sheet shows, and where (``plan``: its geometry)."""

    title: str
    labels: list[str]  # one per rank: "#1 · 0.532"
    columns: list[tuple[int, int]]  # each rank's bucket
    rows: list[str]

    @property
    def plan(self) -> SheetLayout:
        return plan_layout(
            title=self.title,
            column_labels=self.labels,
            column_sizes=self.columns,
            row_labels=self.rows,
        )


def best_sheet(layout: JobLayout, prompt: int, ranked: list[Item]) -> BestSheet:
    sizes = [parse_bucket(item.bucket) for item in ranked]
    return BestSheet(
        title=f"prompt {prompt + 1} · best {len(ranked)} by score · {layout.prompts[prompt]}",
        labels=[f"#{rank} · {item.score or 0:.3f}" for rank, item in enumerate(ranked, start=1)],
        columns=[(b.width, b.height) for b in sizes],
        rows=["best"],
    )


def draw_best_sheet(
    layout: JobLayout,
    prompt: int,
    ranked: list[Item],
    *,
    thumbnail: Callable[[SheetCell], bytes | None],
) -> bytes:
    shown: dict[tuple[int, int], Image.Image | str] = {}
    for column, item in enumerate(ranked):
        data = thumbnail(SheetCell(item.index, item.status, item.key))
        shown[(0, column)] = "missing" if data is None else Image.open(io.BytesIO(data))
    sheet = best_sheet(layout, prompt, ranked)
    image = compose_sheet(
        title=sheet.title,
        column_labels=sheet.labels,
        column_sizes=sheet.columns,
        row_labels=sheet.rows,
        cells=shown,
        footer=_footer(ranked, sheet.plan.size[0]),
    )
    return encode_sheet(image)


def _footer(ranked: list[Item], width: int) -> str:
    """Which cell each rank is, as many as the sheet's width holds."""
    face = font(max(14, CELL_HEIGHT // 14))  # plan_layout's font size
    text = ""
    for rank, item in enumerate(ranked, start=1):
        label = f" {item.score_label}" if item.score_label else ""
        part = f"#{rank} seed {item.seed} {item.bucket}{label}"
        candidate = f"{text} · {part}" if text else part
        if face.getlength(candidate + " …") > width - 2 * MARGIN:
            return text + " …"
        text = candidate
    return text


def write_best_sheets(
    storage: Storage,
    layout: JobLayout,
    items: list[Item],
    *,
    k: int,
    thumbnail: Callable[[SheetCell], bytes | None],
) -> None:
    """Draw and store the best-of sheet of every prompt that has scored images."""
    ranked = ranked_items(items, k)
    for prompt, best in ranked.items():
        data = draw_best_sheet(layout, prompt, best, thumbnail=thumbnail)
        storage.put(f"{layout.folder}/{best_sheet_name(prompt)}", data, content_type="image/jpeg")
