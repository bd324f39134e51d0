"""GPU path switches: dtype, attention, memory format, fused QKV, fp16-safe VAE, torch.compile.

Each is a ``FARM_GPU_*`` setting. ``auto`` means the fastest safe choice on CUDA and
off on CPU (where the tiny test model runs in float32 and nothing here pays):

| setting                   | auto on CUDA                         | CPU  |
|---------------------------|--------------------------------------|------|
| FARM_GPU_DTYPE            | bf16 where supported, else fp16      | fp32 |
| FARM_GPU_SDPA             | on: PyTorch's scaled_dot_product_attention | as loaded |
| FARM_GPU_CHANNELS_LAST    | on (UNet and VAE)                    | off  |
| FARM_GPU_FUSE_QKV         | on (``pipe.fuse_qkv_projections()``) | off  |
| FARM_GPU_VAE              | empty: the model's own VAE           |      |
| FARM_GPU_COMPILE          | max-autotune-no-cudagraphs (UNet)    | off  |

bf16 has float32's range, so the SDXL VAE does not overflow and diffusers does not
upcast it to float32 (an fp16 VAE is upcast for every decode: ~0.16 s per 1024²
image on an H100). With fp16, point FARM_GPU_VAE at an fp16-safe VAE such as
``madebyollin/sdxl-vae-fp16-fix`` (a Hub id or a folder) to skip that upcast.

torch.compile specialises on shapes: each bucket x batch size compiles once. The
buckets in FARM_GPU_WARM_BUCKETS are compiled at worker start (before it takes
work); others on first use. Compiled graphs persist in
``<FARM_MODEL_CACHE_DIR>/torchinductor`` (TORCHINDUCTOR_FX_GRAPH_CACHE), so a
restarted worker warms from the cache. A compile failure logs and falls back to eager.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from models.infra.settings import Settings

log = logging.getLogger(__name__)

Dtype = Literal["bf16", "fp16", "fp32"]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
}


@dataclass(frozen=True)
class GpuOptions:
    dtype: Dtype = "fp32"
    sdpa: bool = False
    channels_last: bool = False
    fuse_qkv: bool = False
    vae: str = ""  # an fp16-safe VAE (Hub id or folder); empty: the model's own
    compile_mode: str = ""  # one of COMPILE_MODES; empty: eager
    compile_fullgraph: bool = True
    cache_dir: Path | None = None  # torch.compile's persistent cache
    warm_buckets: tuple[str, ...] = ()

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def describe(self) -> str:
        parts: list[str] = [self.dtype]
        parts += [name for name in ("sdpa", "channels_last", "fuse_qkv") if getattr(self, name)]
        if self.vae:
            parts.append(f"vae={self.vae}")
        if self.compile_mode:
            parts.append(
                f"compile={self.compile_mode}{'/fullgraph' if self.compile_fullgraph else ''}"
            )
        return ", ".join(parts)


def _switch(value: str, *, on_cuda: bool, name: str) -> bool:
    value = value.strip().lower()
    if value == "auto":
        return on_cuda
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no", ""):
        return False
    raise ValueError(f"FARM_GPU_{name.upper()} must be auto, on or off, not {value!r}")


def resolve_gpu_options(
    *,
    device: str,
    dtype: str = "auto",
    sdpa: str = "auto",
    channels_last: str = "auto",
    fuse_qkv: str = "auto",
    vae: str = "",
    compile_mode: str = "auto",
    compile_fullgraph: bool = True,
    cache_dir: Path | None = None,
    warm_buckets: tuple[str, ...] = (),
) -> GpuOptions:
    """Turn the ``FARM_GPU_*`` strings into concrete switches for ``device``."""
    on_cuda = device.startswith("cuda")
    if dtype == "auto":
        dtype = "fp32"
        if on_cuda:
            dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if dtype not in _DTYPES:
        raise ValueError(f"FARM_GPU_DTYPE must be auto, bf16, fp16 or fp32, not {dtype!r}")
    mode = compile_mode.strip().lower()
    if mode == "auto":
        mode = "max-autotune-no-cudagraphs" if on_cuda else ""
    elif mode in ("off", "none", "0", "false"):
        mode = ""
    if mode and mode not in COMPILE_MODES:
        raise ValueError(f"FARM_GPU_COMPILE must be auto, off or one of {COMPILE_MODES}")
    return GpuOptions(
        dtype=dtype,  # type: ignore[arg-type]
        sdpa=_switch(sdpa, on_cuda=on_cuda, name="sdpa"),
        channels_last=_switch(channels_last, on_cuda=on_cuda, name="channels_last"),
        fuse_qkv=_switch(fuse_qkv, on_cuda=on_cuda, name="fuse_qkv"),
        vae=vae.strip(),
        compile_mode=mode,
        compile_fullgraph=compile_fullgraph,
        cache_dir=cache_dir,
        warm_buckets=warm_buckets,
    )


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
        torch.backends.cuda.matmul.allow_tf32 = True  # whatever is left in float32
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if options.sdpa:  # off: the processors stay as loaded (diffusers' own choice)
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
    if options.fuse_qkv:
        pipe.fuse_qkv_projections()  # after the processors: it swaps in fused ones
    if options.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if options.compile_mode:
        _compile(pipe, options)
    return pipe


def _compile(pipe: Any, options: GpuOptions) -> None:
    if options.cache_dir is not None:
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


def gpu_options_for(settings: Settings, device: str) -> GpuOptions:
    """The ``FARM_GPU_*`` settings, resolved for ``device``."""
    from models.domain.buckets import parse_bucket

    buckets = [b for b in settings.gpu_warm_buckets.split(",") if b.strip()]
    return resolve_gpu_options(
        device=device,
        dtype=settings.gpu_dtype.strip().lower(),
        sdpa=settings.gpu_sdpa,
        channels_last=settings.gpu_channels_last,
        fuse_qkv=settings.gpu_fuse_qkv,
        vae=settings.gpu_vae,
        compile_mode=settings.gpu_compile,
        compile_fullgraph=settings.gpu_compile_fullgraph,
        cache_dir=settings.models_dir / "torchinductor",
        warm_buckets=tuple(parse_bucket(b).name for b in buckets),
    )


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
