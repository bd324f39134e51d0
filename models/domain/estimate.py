"""The dry run's GPU time: estimated H100 seconds per cell, from its bucket's cost.

Each bucket carries its seconds per image at 28 steps with CFG (models/domain/buckets.py
says how they were derived). A cell's time scales from there with its steps, CFG, hi-res
pass and prompt length in 75-token chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from models.domain.buckets import parse_bucket
from models.domain.cells import Cell

REFERENCE_STEPS: Final = 28
UNET_TFLOP_PER_STEP: Final = 13.52  # 1024², batch 2 (CFG), one 77-token chunk
VAE_DECODE_TFLOP: Final = 10.47  # 1024²
# Each 75-token chunk past the first adds 77 text tokens to every cross-attention:
# the key/value projections and attention scores of SDXL's 70 transformer layers,
# ~0.169 TFLOP per step at 1024² with CFG (counted layer by layer: 10 layers at
# 4096 latent tokens x 640 channels, 60 at 1024 x 1280, keys and values from 2048
# text features), about 1.25% of a step.
CROSS_ATTENTION_TFLOP_PER_CHUNK: Final = 0.169
_REFERENCE_TFLOP: Final = REFERENCE_STEPS * UNET_TFLOP_PER_STEP + VAE_DECODE_TFLOP
# A quality tier's time against the bf16 ``standard`` the bucket costs assume, from the
# H100's dense peaks: ``exact`` runs float32 without TF32 (67 TFLOP/s against bf16's
# ~790), ``fast`` FP8 matmuls (1,580 peak, but attention, norms and the VAE stay bf16:
# 0.75 is an assumption until bench/gpu_kit measures it).
TIER_COST: Final[dict[str, float]] = {"exact": 11.8, "standard": 1.0, "fast": 0.75}
_SECONDS_28: Final[dict[str, float]] = {}


def _seconds_28(bucket: str) -> float:
    seconds = _SECONDS_28.get(bucket)
    if seconds is None:
        seconds = _SECONDS_28[bucket] = parse_bucket(bucket).seconds_28
    return seconds


def image_seconds(cell: Cell, chunks: int = 1) -> float:
    """Estimated H100 seconds for one cell whose prompt takes ``chunks`` chunks.

    The UNet share of the bucket's time scales with the steps (halved without CFG,
    ``guidance_scale <= 1``); the VAE decode is paid once, at the output size. A
    hi-res pass adds its steps at ``scale²`` the pixels (attention grows faster than
    that, so it is an underestimate for large scales).
    """
    per_tflop = _seconds_28(cell.bucket) / _REFERENCE_TFLOP  # at this bucket's size
    step = UNET_TFLOP_PER_STEP + CROSS_ATTENTION_TFLOP_PER_CHUNK * max(0, chunks - 1)
    unet = step * (1.0 if cell.guidance_scale > 1.0 else 0.5)
    # A refinement's hi-res pass on its parent's image runs no base pass, but encodes the
    # upscaled image (counted as a decode at the output size: the encoder is smaller).
    tflop = cell.steps * unet
    if cell.base_sha256 is not None and cell.hires_scale is not None:
        tflop = cell.hires_scale**2 * VAE_DECODE_TFLOP
    if cell.hires_scale is None:
        tflop += VAE_DECODE_TFLOP
    else:
        area = cell.hires_scale**2
        hires_steps = cell.hires_steps or cell.steps  # A1111: the steps the pass runs
        tflop += area * (hires_steps * unet + VAE_DECODE_TFLOP)
    return tflop * per_tflop * TIER_COST.get(cell.quality_tier, 1.0)


def estimate_gpu_seconds(cells: Iterable[Cell], chunks: Mapping[str, int] | None = None) -> float:
    """The sum over ``cells``; ``chunks`` maps a prompt text to its chunk count (a cell
    takes the larger of its prompt's and its negative prompt's, as the renderer pads)."""
    counts = chunks or {}
    total = 0.0
    for cell in cells:
        n = max(counts.get(cell.prompt, 1), counts.get(cell.negative_prompt, 1))
        total += image_seconds(cell, n)
    return round(total, 2)
