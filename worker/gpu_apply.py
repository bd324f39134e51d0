"""Putting a loaded SDXL pipeline on the fast path that worker/gpu_options.py describes:
switches applied in place, FP8 through torchao, torch.compile with its persistent cache,
and the warm-up that compiles each warm bucket before the worker takes work.

torch.compile specialises on shapes: each bucket x batch size compiles once. The
buckets in FARM_GPU_WARM_BUCKETS are compiled at worker start (before it takes
work); others on first use. Compiled graphs persist in
``<FARM_MODEL_CACHE_DIR>/torchinductor`` (TORCHINDUCTOR_FX_GRAPH_CACHE), so a
restarted worker warms from the cache. A compile failure logs and falls back to eager.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from worker.gpu_options import GpuOptions

log = logging.getLogger(__name__)


def load_vae(source: str, *, dtype: torch.dtype, cache_dir: Path) -> Any:
    """An fp16-safe VAE: a diffusers folder or a Hub id (e.g. madebyollin/sdxl-vae-fp16-fix)."""
    from diffusers import AutoencoderKL

    location = str(Path(source).expanduser()) if Path(source).expanduser().is_dir() else source
    return AutoencoderKL.from_pretrained(location, torch_dtype=dtype, cache_dir=str(cache_dir))


def apply_gpu_options(pipe: Any, options: GpuOptions, *, vae: Any = None) -> Any:
    """Switch a loaded SDXL pipeline onto the fast path, in place; returns it."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    if vae is not None:
        pipe.vae = vae.to(device=pipe.unet.device, dtype=pipe.unet.dtype)
    if pipe.unet.device.type == "cuda":
        # Process-wide: a worker serves one tier per process (exact turns TF32 off).
        torch.backends.cuda.matmul.allow_tf32 = options.tf32
        torch.backends.cudnn.allow_tf32 = options.tf32
        torch.backends.cudnn.benchmark = True
    if options.sdpa:  # off: the processors stay as loaded (diffusers' own choice)
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
    if options.fuse_qkv:
        pipe.fuse_qkv_projections()  # after the processors: it swaps in fused ones
    if options.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if options.fp8:
        # After fusing (the fused projections are quantized too) and after the memory
        # format, which then never has to convert FP8 tensor subclasses.
        quantize_fp8(pipe.unet)
    if options.compile_mode:
        _compile(pipe, options)
    return pipe


def _fp8_worthwhile(module: torch.nn.Module, _name: str) -> bool:
    # FP8 matmuls need both sizes divisible by 16; the small time-embedding layers lose
    # more to scaling than they gain, so only the attention and feed-forward widths.
    return (
        isinstance(module, torch.nn.Linear)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
        and min(module.in_features, module.out_features) >= 256
    )


def quantize_fp8(unet: torch.nn.Module) -> None:
    """The UNet's large linear layers in FP8 (dynamic per-row scales) through torchao,
    an optional package imported only here: ``tiers_available`` says whether it can."""
    quantization: Any = importlib.import_module("torchao.quantization")
    config = quantization.Float8DynamicActivationFloat8WeightConfig(
        granularity=quantization.PerRow()
    )
    quantization.quantize_(unet, config, filter_fn=_fp8_worthwhile)


def _compile(pipe: Any, options: GpuOptions) -> None:
    if options.cache_dir is not None:
        # An operator's own TORCHINDUCTOR_CACHE_DIR wins.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(options.cache_dir))
        os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
        options.cache_dir.mkdir(parents=True, exist_ok=True)
    import torch._dynamo.config
    import torch._inductor.config as inductor

    inductor.fx_graph_cache = True
    # The settings diffusers recommends for SDXL UNets under inductor.
    inductor.conv_1x1_as_mm = True
    inductor.coordinate_descent_tuning = True
    inductor.epilogue_fusion = False
    inductor.coordinate_descent_check_all_directions = True
    # Nine buckets x a few batch sizes (last shard of a job, out-of-memory halving).
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    pipe.unet = torch.compile(
        pipe.unet, mode=options.compile_mode, fullgraph=options.compile_fullgraph, dynamic=False
    )


def warm_up(render: Any, *, buckets: list[tuple[int, int]], batch_size: int) -> dict[str, float]:
    """Render each bucket once at ``batch_size`` (2 steps): compiles before work arrives.

    ``render(width, height, batch_size)`` renders one batch; returns seconds per bucket.
    A failure logs and stops warming (the worker still serves, compiling on first use).
    """
    spent: dict[str, float] = {}
    for width, height in buckets:
        started = time.perf_counter()
        try:
            render(width, height, batch_size)
        except Exception:
            log.exception(
                "warm-up of %dx%d failed; later shards compile on first use", width, height
            )
            break
        spent[f"{width}x{height}"] = round(time.perf_counter() - started, 2)
        log.info("warmed %dx%d in %.1f s", width, height, spent[f"{width}x{height}"])
    return spent


def warm_renderer(renderer: Any, options: GpuOptions, *, batch_size: int) -> dict[str, float]:
    """Compile the warm buckets before the worker takes work (nothing to do when eager)."""
    if not options.compile_mode or not options.warm_buckets:
        return {}
    from models.domain.buckets import parse_bucket
    from worker.renderer import RenderBatch

    def render(width: int, height: int, size: int) -> None:
        batch = RenderBatch.of(
            prompts=["warm-up"] * size,
            negative_prompts=[""] * size,
            seeds=list(range(size)),
            width=width,
            height=height,
            steps=2,
            guidance_scale=7.0,  # CFG on: the UNet sees the production batch (2 x size)
            sampler="euler_a",
        )
        renderer.render(batch)

    buckets = [(parse_bucket(b).width, parse_bucket(b).height) for b in options.warm_buckets]
    return warm_up(render, buckets=buckets, batch_size=batch_size)
