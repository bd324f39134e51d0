"""GPU path switches: dtype, TF32, attention, memory format, fused QKV, FP8, fp16-safe VAE,
torch.compile; and the quality tiers built from them.

Each switch is a ``FARM_GPU_*`` setting. ``auto`` means the fastest safe choice on CUDA
and off on CPU (where the tiny test model runs in float32 and nothing here pays):

| setting                   | auto on CUDA                         | CPU  |
|---------------------------|--------------------------------------|------|
| FARM_GPU_DTYPE            | bf16 where supported, else fp16      | fp32 |
| FARM_GPU_SDPA             | on: PyTorch's scaled_dot_product_attention | as loaded |
| FARM_GPU_CHANNELS_LAST    | on (UNet and VAE)                    | off  |
| FARM_GPU_FUSE_QKV         | on (``pipe.fuse_qkv_projections()``) | off  |
| FARM_GPU_VAE              | empty: the model's own VAE           |      |
| FARM_GPU_COMPILE          | max-autotune-no-cudagraphs (UNet)    | off  |

TF32 (whatever matrix work is left in float32) is on with CUDA; only the ``exact`` tier
turns it off. FP8 (torchao) is never on by default: only the ``fast`` tier asks for it.

bf16 has float32's range, so the SDXL VAE does not overflow and diffusers does not
upcast it to float32 (an fp16 VAE is upcast for every decode: ~0.16 s per 1024²
image on an H100). With fp16, point FARM_GPU_VAE at an fp16-safe VAE such as
``madebyollin/sdxl-vae-fp16-fix`` (a Hub id or a folder) to skip that upcast.

Applying the options to a pipeline, compiling and warming up: worker/gpu_apply.py.

Quality tiers (``TIERS``): what a job may ask for, each a pure mapping to switches.

| tier       | switches                                              | numerics       |
|------------|-------------------------------------------------------|----------------|
| `exact`    | fp32 weights, TF32 off, SDPA, no compile               | fp32 reference |
| `standard` | bf16, SDPA, fused QKV, channels_last, compile         | bf16 rounding  |
| `fast`     | `standard` + FP8 matmuls (torchao), CUDA cc >= 8.9     | FP8 rounding   |

A renderer for a tier: ``tier_options(tier, device=...)`` then worker/gpu_apply.py.
Which tiers a device serves, and why not: ``tiers_available(device)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, get_args

import torch

from models.infra.settings import Settings

Dtype = Literal["bf16", "fp16", "fp32"]
Tier = Literal["exact", "standard", "fast"]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": torch.float32,
}
# FP8 matmuls (torch._scaled_mm) need Ada / Hopper or newer: compute capability 8.9.
FP8_MIN_CAPABILITY = (8, 9)


@dataclass(frozen=True)
class GpuOptions:
    dtype: Dtype = "fp32"
    tf32: bool = False  # TF32 for float32 matmuls and convolutions (CUDA only)
    sdpa: bool = False
    channels_last: bool = False
    fuse_qkv: bool = False
    fp8: bool = False  # UNet linear layers in FP8 through torchao (CUDA cc >= 8.9)
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
        switches = ("tf32", "sdpa", "channels_last", "fuse_qkv", "fp8")
        parts += [name for name in switches if getattr(self, name)]
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
    tf32: str = "auto",
    sdpa: str = "auto",
    channels_last: str = "auto",
    fuse_qkv: str = "auto",
    fp8: str = "off",
    vae: str = "",
    compile_mode: str = "auto",
    compile_fullgraph: bool = True,
    cache_dir: Path | None = None,
    warm_buckets: tuple[str, ...] = (),
) -> GpuOptions:
    """Turn the ``FARM_GPU_*`` strings into concrete switches for ``device``.

    Explicit values are taken as given on any device (tests force switches on on CPU).
    """
    on_cuda = device.startswith("cuda")
    dtype = dtype.strip().lower()
    if dtype == "auto":
        dtype = "fp32"
        if on_cuda:
            dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if dtype not in _DTYPES:
        raise ValueError(f"FARM_GPU_DTYPE must be auto, bf16, fp16 or fp32, not {dtype!r}")
    mode = compile_mode.strip().lower()
    if mode == "auto":
        mode = "max-autotune-no-cudagraphs" if on_cuda else ""
    elif mode in ("off", "none", "0", "false", ""):
        mode = ""
    if mode and mode not in COMPILE_MODES:
        raise ValueError(f"FARM_GPU_COMPILE must be auto, off or one of {COMPILE_MODES}")
    return GpuOptions(
        dtype=dtype,  # type: ignore[arg-type]
        tf32=_switch(tf32, on_cuda=on_cuda, name="tf32"),
        sdpa=_switch(sdpa, on_cuda=on_cuda, name="sdpa"),
        channels_last=_switch(channels_last, on_cuda=on_cuda, name="channels_last"),
        fuse_qkv=_switch(fuse_qkv, on_cuda=on_cuda, name="fuse_qkv"),
        fp8=_switch(fp8, on_cuda=False, name="fp8"),  # never implied: a tier asks for it
        vae=vae.strip(),
        compile_mode=mode,
        compile_fullgraph=compile_fullgraph,
        cache_dir=cache_dir,
        warm_buckets=warm_buckets,
    )


def gpu_options_for(settings: Settings, device: str) -> GpuOptions:
    """The ``FARM_GPU_*`` settings, resolved for ``device``."""
    from models.domain.buckets import parse_bucket

    buckets = [b for b in settings.gpu_warm_buckets.split(",") if b.strip()]
    return resolve_gpu_options(
        device=device,
        dtype=settings.gpu_dtype,
        sdpa=settings.gpu_sdpa,
        channels_last=settings.gpu_channels_last,
        fuse_qkv=settings.gpu_fuse_qkv,
        vae=settings.gpu_vae,
        compile_mode=settings.gpu_compile,
        compile_fullgraph=settings.gpu_compile_fullgraph,
        cache_dir=settings.models_dir / "torchinductor",
        warm_buckets=tuple(parse_bucket(b).name for b in buckets),
    )


# The tiers as explicit switch values (resolve_gpu_options' keywords): the same
# switches on every device, so a tier means the same numerics wherever it runs.
_STANDARD = {
    "dtype": "bf16",
    "tf32": "on",
    "sdpa": "on",
    "channels_last": "on",
    "fuse_qkv": "on",
    "fp8": "off",
    "compile_mode": "default",
}
TIERS: Mapping[Tier, Mapping[str, str]] = {
    # fp32 equivalent: SDPA computes the same attention, so it stays on; nothing that
    # rounds below float32 (no TF32, no compile: inductor may reorder reductions).
    "exact": {
        "dtype": "fp32",
        "tf32": "off",
        "sdpa": "on",
        "channels_last": "off",
        "fuse_qkv": "off",
        "fp8": "off",
        "compile_mode": "off",
    },
    "standard": _STANDARD,
    "fast": {**_STANDARD, "fp8": "on"},
}
TIER_NAMES: tuple[Tier, ...] = get_args(Tier)


def tier_options(
    tier: Tier,
    *,
    device: str,
    compile_mode: str | None = None,
    cache_dir: Path | None = None,
    warm_buckets: tuple[str, ...] = (),
) -> GpuOptions:
    """The switches of ``tier`` on ``device``. ``compile_mode`` replaces the tier's mode
    for a compiled tier (an operator's FARM_GPU_COMPILE); an eager tier stays eager."""
    if tier not in TIERS:
        raise ValueError(f"quality tier must be one of {TIER_NAMES}, not {tier!r}")
    switches = TIERS[tier]
    mode = switches["compile_mode"]
    if compile_mode is not None and mode != "off":
        mode = compile_mode
    return resolve_gpu_options(
        device=device,
        dtype=switches["dtype"],
        tf32=switches["tf32"],
        sdpa=switches["sdpa"],
        channels_last=switches["channels_last"],
        fuse_qkv=switches["fuse_qkv"],
        fp8=switches["fp8"],
        compile_mode=mode,
        cache_dir=cache_dir,
        warm_buckets=warm_buckets,
    )


@cache
def torchao_missing() -> str | None:
    """None when torchao imports (an optional package), else why not."""
    try:
        importlib.import_module("torchao.quantization")
    except Exception as exc:  # ImportError, or a build that does not fit this torch
        return f"torchao does not import ({exc!r:.120})"
    return None


def tiers_available(device: str) -> dict[Tier, str | None]:
    """Each tier -> None when ``device`` can serve it, else the reason it cannot."""
    on_cuda = device.startswith("cuda")
    bf16 = torch.cuda.is_bf16_supported() if on_cuda else True  # CPUs emulate where needed
    standard = None if bf16 else f"{device} has no bf16 support"
    fast = standard
    if fast is None and not on_cuda:
        fast = f"FP8 needs a CUDA GPU of compute capability >= 8.9, and {device} is a CPU"
    elif fast is None:
        capability = torch.cuda.get_device_capability(torch.device(device))
        if capability < FP8_MIN_CAPABILITY:
            fast = (
                f"FP8 needs compute capability >= 8.9; {torch.cuda.get_device_name(device)} "
                f"has {capability[0]}.{capability[1]}"
            )
        else:
            fast = torchao_missing()
    return {"exact": None, "standard": standard, "fast": fast}
