"""What a hi-res refinement saves by starting from the parent's image, on the tiny model.

A refinement with ``hires`` alone (docs/REFINE.md) runs only the hi-res pass on the
parent cell's stored PNG (upscaled in pixels, encoded by the VAE, denoised at the
strength). The alternative is a re-render of the cell with the hi-res fix: its base pass
again (same seed and settings: the same image, as tests/unit/test_refine.py shows), then
the same pass on its latents. This times both on the same cells with the worker's own
renderer, and the base pass alone, and reports the share of the time the reuse saves.

    python -m bench.refine_hires                     # 2 cells, 832x1216, 28 + 14 steps
    python -m bench.refine_hires --cells 1 --size 64x64 --steps 1 --hires-steps 1 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from bench._common import emit
from models.domain.buckets import parse_bucket
from worker.hires import hires_size
from worker.renderer import DiffusersRenderer, RenderBatch
from worker.tiny_sdxl import build_tiny_sdxl


def _timed(render: Callable[[], list[Image.Image]], repeats: int) -> tuple[float, list[Any]]:
    times: list[float] = []
    images: list[Image.Image] = []
    for _ in range(repeats):
        started = time.perf_counter()
        images = render()
        times.append(time.perf_counter() - started)
    return statistics.median(times), images


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2)
    parser.add_argument("--bucket", default="832x1216")
    parser.add_argument("--size", help="WxH instead of a bucket (a quick check: 64x64)")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--hires-steps", type=int, default=14)
    parser.add_argument("--scale", type=float, default=1.5)
    parser.add_argument("--strength", type=float, default=0.55)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    renderer = DiffusersRenderer(build_tiny_sdxl(), model_name="tiny-sdxl")
    bucket = parse_bucket(args.bucket)
    width, height = bucket.width, bucket.height
    if args.size:
        width, height = (int(side) for side in args.size.split("x"))
    base = RenderBatch.of(
        prompts=["1girl, solo, smile"] * args.cells,
        negative_prompts=["lowres"] * args.cells,
        seeds=list(range(1, args.cells + 1)),
        width=width,
        height=height,
        steps=args.steps,
        guidance_scale=7.0,
        sampler="euler_a",
    )
    hires = {
        "hires_scale": args.scale,
        "hires_strength": args.strength,
        "hires_steps": args.hires_steps,
    }
    renderer.render(base.with_fields(steps=1))  # warm: the first call pays one-time costs
    base_s, parents = _timed(lambda: renderer.render(base), args.repeats)
    full = base.with_fields(**hires)
    full_s, _ = _timed(lambda: renderer.render(full), args.repeats)
    # The child's batch: the parents' images as bases (the worker reads them from storage
    # and checks their sha256 first: worker/refine_base.py; not timed here).
    reuse = RenderBatch(full.with_fields(base_sha256="0" * 64).cells, tuple(parents))
    reuse_s, images = _timed(lambda: renderer.render(reuse), args.repeats)
    size = hires_size(width, height, args.scale)
    assert all(image.size == size for image in images)
    result = {
        "cells": args.cells,
        "size": f"{width}x{height}",
        "output": f"{size[0]}x{size[1]}",
        "steps": args.steps,
        "hires_steps": args.hires_steps,
        "strength": args.strength,
        "threads": torch.get_num_threads(),
        "seconds": {
            "base_pass": round(base_s, 3),
            "rerender_with_hires": round(full_s, 3),
            "hires_from_parent_image": round(reuse_s, 3),
        },
        "saved_s": round(full_s - reuse_s, 3),
        "saved_share": round((full_s - reuse_s) / full_s, 3) if full_s else 0.0,
    }
    emit(
        "refine_hires",
        result,
        f"{args.cells} cells {width}x{height} -> {result['output']}: re-render {full_s:.2f} s, "
        f"from the parent's image {reuse_s:.2f} s (base pass {base_s:.2f} s); "
        f"saves {result['saved_share']:.0%}",
    )
    return result


if __name__ == "__main__":
    main()
