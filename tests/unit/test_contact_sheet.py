"""Contact sheets: geometry, label placement, and cell pixels equal the scaled source."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from worker.contact_sheet import (
    BACKGROUND,
    CELL_HEIGHT,
    PLACEHOLDER,
    Box,
    SheetLayout,
    compose_sheet,
    encode_sheet,
    make_thumbnail,
    plan_layout,
    scale_to_height,
)

SQUARE = (1024, 1024)
PORTRAIT = (832, 1216)
LANDSCAPE = (1216, 832)


def _source(size: tuple[int, int], seed: int) -> Image.Image:
    """A picture with structure at every scale (gradient + noise): resampling shows."""
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(0, 255, w)[None, :, None]
    y = np.linspace(0, 255, h)[:, None, None]
    base = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1))], axis=2)
    noise = rng.integers(0, 64, (h, w, 3))
    pixels = np.concatenate([base, np.full((h, w, 1), 128.0)], axis=2) * 0.75 + noise
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def _crop(sheet: Image.Image, box: Box) -> Image.Image:
    return sheet.crop(box)


def _ink(sheet: Image.Image, box: Box) -> npt.NDArray[np.bool_]:
    """Mask of pixels in ``box`` that are not background: where text was drawn."""
    pixels = np.asarray(sheet.crop(box)).astype(int)
    mask: npt.NDArray[np.bool_] = np.abs(pixels - np.array(BACKGROUND)).sum(axis=2) > 60
    return mask


def _sheet(
    sizes: list[tuple[int, int]], seeds: list[int]
) -> tuple[Image.Image, dict[tuple[int, int], Image.Image]]:
    sources = {
        (r, c): _source(size, seed * 10 + c)
        for r, seed in enumerate(seeds)
        for c, size in enumerate(sizes)
    }
    sheet = compose_sheet(
        title="prompt 1: 1girl, solo, smile",
        column_labels=[f"{w}x{h}" for w, h in sizes],
        column_sizes=sizes,
        row_labels=[f"seed {s}" for s in seeds],
        cells=dict(sources),
    )
    return sheet, sources


def _layout(sizes: list[tuple[int, int]], seeds: list[int]) -> SheetLayout:
    return plan_layout(
        title="prompt 1: 1girl, solo, smile",
        column_labels=[f"{w}x{h}" for w, h in sizes],
        column_sizes=sizes,
        row_labels=[f"seed {s}" for s in seeds],
    )


@pytest.mark.parametrize(
    ("sizes", "widths"),
    [
        ([SQUARE, SQUARE, SQUARE], [256, 256, 256]),
        ([SQUARE, PORTRAIT, LANDSCAPE], [256, 175, 374]),
    ],
    ids=["3x3", "mixed-aspect"],
)
def test_geometry_rows_are_seeds_columns_are_buckets(
    sizes: list[tuple[int, int]], widths: list[int]
) -> None:
    seeds = [1, 22, 333]
    sheet, _ = _sheet(sizes, seeds)
    layout = _layout(sizes, seeds)
    assert sheet.size == layout.size
    assert len(layout.cell_boxes) == 3 and all(len(row) == 3 for row in layout.cell_boxes)
    for r, row in enumerate(layout.cell_boxes):
        for c, (x0, y0, x1, y1) in enumerate(row):
            assert (x1 - x0, y1 - y0) == (widths[c], CELL_HEIGHT)  # common height
            assert x0 >= 0 and y0 >= 0 and x1 <= sheet.width and y1 <= sheet.height
            # Columns line up down the sheet, rows across it.
            assert (x0, x1) == layout.cell_boxes[0][c][0::2]
            assert (y0, y1) == row[0][1::2]
            if c:
                assert x0 > row[c - 1][2]  # a gap, no overlap
            if r:
                assert y0 > layout.cell_boxes[r - 1][c][3]
    right = layout.cell_boxes[0][-1][2]
    bottom = layout.cell_boxes[-1][0][3]
    # Margins are small: the sheet is the grid plus labels, not a mostly empty canvas.
    assert sheet.width - right <= 20 and sheet.height - bottom <= 20


@pytest.mark.parametrize("sizes", [[SQUARE] * 3, [SQUARE, PORTRAIT, LANDSCAPE]])
def test_labels_sit_above_their_column_and_left_of_their_row(
    sizes: list[tuple[int, int]],
) -> None:
    seeds = [1, 22, 333]
    sheet, _ = _sheet(sizes, seeds)
    layout = _layout(sizes, seeds)
    first_row_top = layout.cell_boxes[0][0][1]
    grid_left = layout.cell_boxes[0][0][0]
    for c, box in enumerate(layout.column_label_boxes):
        column = layout.cell_boxes[0][c]
        assert box[3] <= first_row_top  # above the cells
        ink = _ink(sheet, box)
        assert ink.sum() > 30, f"no text in column label {c}"
        xs = np.nonzero(ink.any(axis=0))[0] + box[0]
        # The text is inside its own column and centred on it (legible, not clipped).
        assert column[0] <= xs.min() and xs.max() < column[2]
        assert abs((xs.min() + xs.max()) / 2 - (column[0] + column[2]) / 2) <= 3
        heights = np.nonzero(ink.any(axis=1))[0]
        assert heights.max() - heights.min() >= 10  # a real font size, not a 6 px bitmap
    for r, box in enumerate(layout.row_label_boxes):
        row = layout.cell_boxes[r][0]
        assert box[2] <= grid_left and (box[1], box[3]) == (row[1], row[3])
        ink = _ink(sheet, box)
        assert ink.sum() > 30, f"no text in row label {r}"
        ys = np.nonzero(ink.any(axis=1))[0] + box[1]
        assert abs((ys.min() + ys.max()) / 2 - (row[1] + row[3]) / 2) <= 4
    assert _ink(sheet, layout.title_box).sum() > 100


@pytest.mark.parametrize("sizes", [[SQUARE] * 3, [SQUARE, PORTRAIT, LANDSCAPE]])
def test_cell_pixels_equal_the_source_scaled_with_the_same_resampling(
    sizes: list[tuple[int, int]],
) -> None:
    seeds = [1, 22, 333]
    sheet, sources = _sheet(sizes, seeds)
    layout = _layout(sizes, seeds)
    for (r, c), source in sources.items():
        box = layout.cell_boxes[r][c]
        expected = source.resize(
            (box[2] - box[0], CELL_HEIGHT), Image.Resampling.LANCZOS, reducing_gap=2.0
        )
        assert _crop(sheet, box).tobytes() == expected.tobytes()
        # A nearest-neighbour scaling would not match: the check can tell resamplings apart.
        nearest = source.resize((box[2] - box[0], CELL_HEIGHT), Image.Resampling.NEAREST)
        assert _crop(sheet, box).tobytes() != nearest.tobytes()


def test_a_sheet_from_thumbnails_matches_one_from_full_images_closely() -> None:
    sizes = [SQUARE, PORTRAIT]
    seeds = [5, 6]
    full, sources = _sheet(sizes, seeds)
    thumbs = {k: Image.open(io.BytesIO(make_thumbnail(v))) for k, v in sources.items()}
    assert all(t.height == CELL_HEIGHT for t in thumbs.values())
    from_thumbs = compose_sheet(
        title="prompt 1: 1girl, solo, smile",
        column_labels=[f"{w}x{h}" for w, h in sizes],
        column_sizes=sizes,
        row_labels=[f"seed {s}" for s in seeds],
        cells=dict(thumbs),
    )
    assert from_thumbs.size == full.size
    diff = np.abs(np.asarray(from_thumbs).astype(int) - np.asarray(full).astype(int))
    assert diff.mean() < 4  # JPEG q88 of the same scaled pixels


def test_missing_and_failed_cells_are_drawn_as_placeholders() -> None:
    sizes = [SQUARE, PORTRAIT]
    sheet = compose_sheet(
        title="p",
        column_labels=["a", "b"],
        column_sizes=sizes,
        row_labels=["seed 1"],
        cells={(0, 1): "failed"},
    )
    layout = plan_layout(
        title="p", column_labels=["a", "b"], column_sizes=sizes, row_labels=["seed 1"]
    )
    for box in layout.cell_boxes[0]:
        assert sheet.getpixel((box[0] + 2, box[1] + 2)) == PLACEHOLDER
        assert _ink(sheet, box).sum() > 0.9 * (box[2] - box[0]) * (box[3] - box[1])
    pending, failed = (np.asarray(sheet.crop(b)) for b in layout.cell_boxes[0])
    assert (pending != np.array(PLACEHOLDER)).any() and (failed != np.array(PLACEHOLDER)).any()


def test_a_long_prompt_wraps_into_at_most_three_lines() -> None:
    prompt = ", ".join(["masterpiece, best quality, very aesthetic, absurdres, 1girl"] * 12)
    layout = plan_layout(
        title=prompt, column_labels=["1024x1024"], column_sizes=[SQUARE], row_labels=["seed 1"]
    )
    assert 1 < len(layout.title_lines) <= 3
    assert layout.title_lines[-1].endswith("…")
    sheet = compose_sheet(
        title=prompt,
        column_labels=["1024x1024"],
        column_sizes=[SQUARE],
        row_labels=["seed 1"],
        cells={},
    )
    # No title text runs past the right margin.
    right = _ink(sheet, (layout.title_box[2], 0, sheet.width, layout.title_box[3]))
    assert not right.any()


def test_thumbnails_and_sheets_encode_as_jpeg() -> None:
    source = _source(PORTRAIT, 3)
    thumb = Image.open(io.BytesIO(make_thumbnail(source)))
    assert thumb.format == "JPEG" and thumb.size == (175, 256)
    assert scale_to_height(source).size == (175, 256)
    sheet = Image.open(io.BytesIO(encode_sheet(Image.new("RGB", (40, 30)))))
    assert sheet.format == "JPEG" and sheet.size == (40, 30)
