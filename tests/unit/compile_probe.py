"""A worker's compile path in a process of its own: ``python -m tests.unit.compile_probe``.

Loads the tiny model from a folder, compiles with torch.compile (mode "default") into
the persistent cache named by TORCHINDUCTOR_CACHE_DIR, warms the bucket with
``warm_renderer`` as a worker does at start, then renders that bucket. Prints one
JSON line: inductor's cache counters after the warm-up, the graphs compiled by the
render after it, and where the pixels were saved.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

BUCKET = "1024x1024"  # the smallest square bucket: warm-up renders table buckets only
SEEDS = [1]
STEPS = 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("pixels", type=Path, help="where to save the render (.npy)")
    args = parser.parse_args()
    from diffusers import StableDiffusionXLPipeline
    from torch._dynamo.utils import counters

    from worker.gpu_apply import apply_gpu_options, warm_renderer
    from worker.gpu_options import resolve_gpu_options
    from worker.renderer import DiffusersRenderer, RenderBatch

    options = resolve_gpu_options(
        device="cpu",
        dtype="fp32",
        sdpa="off",
        channels_last="off",
        fuse_qkv="off",
        compile_mode="default",
        cache_dir=Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]),
        warm_buckets=(BUCKET,),
    )
    pipe = StableDiffusionXLPipeline.from_pretrained(args.model, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    renderer = DiffusersRenderer(apply_gpu_options(pipe, options), model_name="probe")
    warmed = warm_renderer(renderer, options, batch_size=len(SEEDS))
    after_warm_up = dict(counters["inductor"])
    graphs = counters["stats"]["unique_graphs"]
    width, height = (int(v) for v in BUCKET.split("x"))
    batch = RenderBatch.of(
        prompts=["1girl, solo, smile"] * len(SEEDS),
        negative_prompts=["lowres"] * len(SEEDS),
        seeds=SEEDS,
        width=width,
        height=height,
        steps=STEPS,
        guidance_scale=7.0,
        sampler="euler_a",
    )
    images = renderer.render(batch)
    np.save(args.pixels, np.stack([np.asarray(image) for image in images]))
    record = {
        "warmed": warmed,
        "inductor": after_warm_up,
        "graphs_compiled_by_render": counters["stats"]["unique_graphs"] - graphs,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
