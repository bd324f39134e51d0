"""The GPU path vs plain diffusers, same process, same architecture, same batch.

Full-size SDXL at 1024², 28 steps, CFG 7, Euler a (goal: >= 2x plain diffusers fp16 and
>= 1.5 images/s on one H100). Each configuration records its PSNR against an fp32
eager reference (the ``exact`` tier) of seed 0 through the same weights: random weights
still measure how far the arithmetic drifts. The device kit (bench/gpu_kit/) runs this
and more in deadline-bound stages on a lent GPU. ``--model`` names real weights (a
diffusers folder); without it the full SDXL architecture is built with random weights
(bench/_sdxl_full.py).

- baseline: ``StableDiffusionXLPipeline`` in fp16 as diffusers ships it (its own
  attention choice, the VAE upcast to fp32 for decoding), called with the batch;
- farm: the renderer a worker builds (worker/gpu_options.py from the ``FARM_GPU_*``
  settings: bf16, SDPA, channels_last, fused QKV, torch.compile warmed per bucket).

No CUDA device: says so and exits 0, unless ``--tiny``, which runs the same code on
CPU with the tiny test model (worker/tiny_sdxl.py) so that it cannot rot:

    python -m bench.gpu_render                   # needs CUDA
    python -m bench.gpu_render --tiny --steps 2 --size 256 --iters 1
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from bench._common import emit
from bench.gpu_kit.common import noise_in_float32, pixels, psnr
from models.infra.settings import Settings
from worker.gpu_apply import apply_gpu_options, warm_renderer
from worker.gpu_options import gpu_options_for, tier_options
from worker.renderer import DiffusersRenderer, RenderBatch

PROMPT = "masterpiece, best quality, very aesthetic, absurdres, 1girl, solo, smile, upper body"
NEGATIVE = "lowres, bad anatomy, bad hands, text, error, worst quality, low quality"


def build_pipeline(args: argparse.Namespace, device: str, dtype: torch.dtype) -> Any:
    if args.tiny:
        from worker.tiny_sdxl import build_tiny_sdxl

        return build_tiny_sdxl().to(device=device, dtype=dtype)
    if args.model:
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline.from_pretrained(args.model, torch_dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device)
    from bench._sdxl_full import build_full_sdxl

    return build_full_sdxl(device, dtype)


def timed(call: Callable[[], Any], *, iters: int, images: int, device: str) -> dict[str, float]:
    seconds = []
    for _ in range(iters):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    best = min(seconds)
    return {"s_per_batch": round(best, 3), "images_per_s": round(images / best, 3)}


def batch(args: argparse.Namespace, size: int | None = None) -> RenderBatch:
    size = args.batch if size is None else size
    return RenderBatch.of(
        prompts=[PROMPT] * size,
        negative_prompts=[NEGATIVE] * size,
        seeds=list(range(size)),
        width=args.size,
        height=args.size,
        steps=args.steps,
        guidance_scale=7.0,
        sampler="euler_a",
    )


def run_reference(args: argparse.Namespace, device: str) -> Any:
    """Seed 0 alone through the exact tier (fp32, TF32 off, eager): the PSNR reference."""
    options = tier_options("exact", device=device)
    pipe = apply_gpu_options(build_pipeline(args, device, options.torch_dtype), options)
    [image] = DiffusersRenderer(pipe, model_name="reference").render(batch(args, size=1))
    return pixels([image])[0]


def run_baseline(args: argparse.Namespace, device: str, reference: Any) -> dict[str, Any]:
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = build_pipeline(args, device, dtype)
    b = batch(args)

    def call() -> Any:
        generators = [torch.Generator("cpu").manual_seed(s) for s in b.seeds]
        with torch.inference_mode():
            return pipe(
                prompt=b.prompts,
                negative_prompt=b.negative_prompts,
                width=b.first.width,
                height=b.first.height,
                num_inference_steps=b.first.steps,
                guidance_scale=b.first.guidance_scale,
                generator=generators,
            )

    [first, *_] = call().images  # warm: allocator, cuDNN choices
    result: dict[str, Any] = timed(call, iters=args.iters, images=args.batch, device=device)
    return {**result, "psnr_vs_fp32": psnr(pixels([first])[0], reference)}


def run_farm(args: argparse.Namespace, device: str, reference: Any) -> dict[str, Any]:
    options = gpu_options_for(Settings(), device)
    pipe = build_pipeline(args, device, options.torch_dtype)
    apply_gpu_options(pipe, options)
    renderer = DiffusersRenderer(pipe, model_name="bench")
    b = batch(args)
    bucket = f"{b.first.width}x{b.first.height}"
    started = time.perf_counter()
    if options.compile_mode and bucket in options.warm_buckets:
        warm_renderer(renderer, options, batch_size=args.batch)
    first = renderer.render(b)[0]  # warm: compiles here if the bucket was not warmed
    warm_s = time.perf_counter() - started
    result = timed(lambda: renderer.render(b), iters=args.iters, images=args.batch, device=device)
    return {
        **result,
        "warm_up_s": round(warm_s, 1),
        "options": options.describe(),
        "psnr_vs_fp32": psnr(pixels([first])[0], reference),
    }


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model; runs on CPU too")
    parser.add_argument("--model", help="a diffusers SDXL folder with real weights")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        message = "no CUDA device: the full-size GPU benchmark needs one (--tiny runs on CPU)"
        emit("gpu_render", {"skipped": message}, message)
        return {"skipped": message}
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else "cpu"
    noise_in_float32()  # the same noise per seed in every dtype, as torch 2.13 draws it
    reference = run_reference(args, device)
    _free(device)
    baseline = run_baseline(args, device, reference)
    _free(device)  # the baseline's pipeline is gone: its memory goes back
    farm = run_farm(args, device, reference)
    speedup = round(farm["images_per_s"] / baseline["images_per_s"], 2)
    model = "tiny-sdxl" if args.tiny else (args.model or "full-size SDXL, random weights")
    result = {
        "device": name,
        "model": model,
        "size": f"{args.size}x{args.size}",
        "steps": args.steps,
        "batch": args.batch,
        "baseline_diffusers": baseline,
        "farm": farm,
        "speedup": speedup,
        "goal": {"speedup": 2.0, "images_per_s_h100": 1.5},
    }
    emit(
        "gpu_render",
        result,
        f"{name}, {model}, {args.size}², {args.steps} steps, batch {args.batch}: "
        f"farm {farm['images_per_s']} images/s vs diffusers {baseline['images_per_s']} "
        f"({speedup}x; goal >= 2x, >= 1.5 images/s on an H100); PSNR vs fp32: farm "
        f"{farm['psnr_vs_fp32']} dB, diffusers {baseline['psnr_vs_fp32']} dB",
    )
    return result


if __name__ == "__main__":
    main()
