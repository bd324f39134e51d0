"""Contact sheets: one labelled image per prompt, rows = seeds, columns = buckets.

Every cell is scaled to one common height (so a column's width follows its
bucket's aspect) with the same resampling as the per-cell thumbnails, so a sheet
composed from thumbnails equals one composed from the full images.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

CELL_HEIGHT = 256  # px: thumbnails and sheet cells
RESAMPLE = Image.Resampling.LANCZOS
REDUCING_GAP = 2.0  # a box pre-reduction first: 2x faster, indistinguishable at this size

MARGIN = 16
GAP = 6
PAD = 8
BACKGROUND = (24, 24, 27)
TEXT = (228, 228, 231)
MUTED = (161, 161, 170)
PLACEHOLDER = (63, 63, 70)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def scaled_width(width: int, height: int, cell_height: int) -> int:
    return max(1, round(width * cell_height / height))


def scale_to_height(image: Image.Image, height: int = CELL_HEIGHT) -> Image.Image:
    """The one scaling every sheet cell and thumbnail goes through."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if rgb.height == height:
        return rgb
    size = (scaled_width(rgb.width, rgb.height, height), height)
    return rgb.resize(size, RESAMPLE, reducing_gap=REDUCING_GAP)


def make_thumbnail(image: Image.Image, *, height: int = CELL_HEIGHT, quality: int = 88) -> bytes:
    """A cell's small JPEG: what sheets are composed from and galleries show."""
    buffer = io.BytesIO()
    scale_to_height(image, height).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_sheet(sheet: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # 4:4:4 chroma keeps the labels crisp.
    sheet.save(buffer, format="JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled scalable TrueType font (no system fonts needed)."""
    loaded = ImageFont.load_default(size=size)
    if not isinstance(loaded, ImageFont.FreeTypeFont):  # Pillow built without FreeType
        raise RuntimeError("contact sheets need Pillow with FreeType support")
    return loaded


@dataclass(frozen=True)
class SheetLayout:
    size: tuple[int, int]
    title_box: Box
    title_lines: list[str]
    column_label_boxes: list[Box]
    row_label_boxes: list[Box]
    cell_boxes: list[list[Box]]  # [row][column]
    footer_box: Box | None
    font_size: int


def _wrap(text: str, width: float, face: ImageFont.FreeTypeFont, max_lines: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if face.getlength(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and face.getlength(last + " …") > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + " …"
    return lines or [""]


def plan_layout(
    *,
    title: str,
    column_labels: list[str],
    column_sizes: list[tuple[int, int]],
    row_labels: list[str],
    cell_height: int = CELL_HEIGHT,
    footer: str | None = None,
) -> SheetLayout:
    """Where everything goes; pure geometry, so tests can check label placement."""
    if len(column_labels) != len(column_sizes):
        raise ValueError("one label per column")
    font_size = max(14, cell_height // 14)
    face = font(font_size)
    line_h = font_size + 6
    widths = [scaled_width(w, h, cell_height) for w, h in column_sizes]
    label_w = int(max((face.getlength(r) for r in row_labels), default=0)) + 2 * PAD
    grid_w = sum(widths) + GAP * max(0, len(widths) - 1)
    width = max(2 * MARGIN + label_w + grid_w, 320)
    title_lines = _wrap(title, width - 2 * MARGIN, face, max_lines=3)
    title_box = (MARGIN, MARGIN, width - MARGIN, MARGIN + line_h * len(title_lines))
    header_top = title_box[3] + PAD
    header_h = line_h + PAD
    top = header_top + header_h
    xs: list[int] = []
    x = MARGIN + label_w
    for w in widths:
        xs.append(x)
        x += w + GAP
    column_label_boxes = [
        (x0, header_top, x0 + w, top - PAD // 2) for x0, w in zip(xs, widths, strict=True)
    ]
    cell_boxes: list[list[Box]] = []
    row_label_boxes: list[Box] = []
    y = top
    for _ in row_labels:
        cell_boxes.append(
            [(x0, y, x0 + w, y + cell_height) for x0, w in zip(xs, widths, strict=True)]
        )
        row_label_boxes.append((MARGIN, y, MARGIN + label_w - PAD, y + cell_height))
        y += cell_height + GAP
    bottom = y - GAP if row_labels else y
    footer_box = None
    if footer:
        footer_box = (MARGIN, bottom + PAD, width - MARGIN, bottom + PAD + line_h)
        bottom = footer_box[3]
    return SheetLayout(
        size=(width, bottom + MARGIN),
        title_box=title_box,
        title_lines=title_lines,
        column_label_boxes=column_label_boxes,
        row_label_boxes=row_label_boxes,
        cell_boxes=cell_boxes,
        footer_box=footer_box,
        font_size=font_size,
    )


def compose_sheet(
    *,
    title: str,
    column_labels: list[str],
    column_sizes: list[tuple[int, int]],
    row_labels: list[str],
    cells: Mapping[tuple[int, int], Image.Image | str],
    cell_height: int = CELL_HEIGHT,
    footer: str | None = None,
) -> Image.Image:
    """Draw the sheet. ``cells[(row, column)]`` is an image, or a word ("failed") for a
    cell without one; cells not in the mapping show as "pending"."""
    layout = plan_layout(
        title=title,
        column_labels=column_labels,
        column_sizes=column_sizes,
        row_labels=row_labels,
        cell_height=cell_height,
        footer=footer,
    )
    face = font(layout.font_size)
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    x0, y0, _, _ = layout.title_box
    for i, line in enumerate(layout.title_lines):
        draw.text((x0, y0 + i * (layout.font_size + 6)), line, font=face, fill=TEXT)
    for label, box in zip(column_labels, layout.column_label_boxes, strict=True):
        center = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        draw.text(center, label, font=face, fill=TEXT, anchor="mm")
    for label, box in zip(row_labels, layout.row_label_boxes, strict=True):
        draw.text((box[2], (box[1] + box[3]) / 2), label, font=face, fill=TEXT, anchor="rm")
    for r, row in enumerate(layout.cell_boxes):
        for c, box in enumerate(row):
            content = cells.get((r, c), "pending")
            if isinstance(content, Image.Image):
                scaled = scale_to_height(content, cell_height)
                if scaled.size != (box[2] - box[0], box[3] - box[1]):
                    scaled = scaled.resize((box[2] - box[0], box[3] - box[1]), RESAMPLE)
                sheet.paste(scaled, box[:2])
            else:
                draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=PLACEHOLDER)
                middle = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
                draw.text(middle, content, font=face, fill=MUTED, anchor="mm")
    if layout.footer_box is not None and footer:
        draw.text(layout.footer_box[:2], footer, font=face, fill=MUTED)
    return sheet
