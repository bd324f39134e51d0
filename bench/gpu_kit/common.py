"""What the kit's stages share: the deadline, timing, PSNR and the environment record.

Nothing here imports the farm's services: the stages run on a machine that has only
torch, the carried wheels and this working tree.
"""

from __future__ import annotations

import gc
import importlib.metadata
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

# The prompt of bench/gpu_render.py: plain tags, one 77-token chunk, no weights, so our
# A1111-style encoder and plain diffusers encode it identically.
PROMPT = "masterpiece, best quality, very aesthetic, absurdres, 1girl, solo, smile, upper body"
NEGATIVE = "lowres, bad anatomy, bad hands, text, error, worst quality, low quality"


# PyTorch's backend flags as the process found them. A tier sets them process-wide
# (worker/gpu_apply.py: cuDNN autotuning on, TF32 per tier); the baseline must run
# diffusers as it ships. The first device run left them set: the exact tier's
# cudnn.benchmark searched every algorithm of diffusers' fp32 VAE at batch 4, a
# 141 s first call, and its TF32-off slowed the baseline's fp32 convolutions.
_STOCK_FLAGS = {
    "cudnn_benchmark": torch.backends.cudnn.benchmark,
    "cudnn_tf32": torch.backends.cudnn.allow_tf32,
    "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
}


def stock_backend_flags() -> dict[str, bool]:
    """Put the backend flags back as the process found them; returns them. A flag is
    written only where it changed: writing the TF32 ones, even unchanged, moves torch's
    fp32 precision setting off its default, and inductor's cache keys on it."""
    if torch.backends.cudnn.benchmark != _STOCK_FLAGS["cudnn_benchmark"]:
        torch.backends.cudnn.benchmark = _STOCK_FLAGS["cudnn_benchmark"]
    if torch.backends.cudnn.allow_tf32 != _STOCK_FLAGS["cudnn_tf32"]:
        torch.backends.cudnn.allow_tf32 = _STOCK_FLAGS["cudnn_tf32"]
    if torch.backends.cuda.matmul.allow_tf32 != _STOCK_FLAGS["matmul_tf32"]:
        torch.backends.cuda.matmul.allow_tf32 = _STOCK_FLAGS["matmul_tf32"]
    return dict(_STOCK_FLAGS)


@dataclass
class Budget:
    """The run's deadline on the monotonic clock; stages ask it before they start."""

    deadline: float

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() >= seconds


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of 8-bit images; inf for identical pixels. Random weights still measure
    numeric drift: the same seeds through the same weights differ only by arithmetic."""
    diff = image.astype(np.float64) - reference.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return math.inf if mse == 0 else round(10 * math.log10(255.0**2 / mse), 2)


def pixels(images: Sequence[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(image.convert("RGB")) for image in images])


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free(device: str) -> None:
    """Drop compiled graphs and cached blocks: the next stage starts from an empty GPU."""
    import torch._dynamo

    torch._dynamo.reset()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def time_calls(
    call: Callable[[], Any], *, images: int, iters: int, budget: Budget, device: str
) -> dict[str, Any]:
    """One untimed call (warm-up: compiles, autotunes, allocates), then up to ``iters``
    timed calls while the budget allows another; the best call is the figure."""
    sync(device)
    started = time.perf_counter()
    call()
    sync(device)
    first_s = time.perf_counter() - started
    seconds: list[float] = []
    while len(seconds) < iters and (not seconds or budget.allows(2 * seconds[-1])):
        started = time.perf_counter()
        call()
        sync(device)
        seconds.append(time.perf_counter() - started)
    best = min(seconds)
    return {
        "batch": images,
        "first_call_s": round(first_s, 2),
        "s_per_batch": round(best, 3),
        "s_per_image": round(best / images, 3),
        "images_per_s": round(images / best, 3),
        "timed_calls": len(seconds),
    }


def environment(device: str) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    record: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": version("diffusers"),
        "transformers": version("transformers"),
        "torchao": version("torchao"),
        # torch < 2.13 draws other bf16/fp16 noise; then the kit draws float32's instead.
        "torch_draws_other_bf16_noise": not torch.equal(
            torch.randn(16, generator=torch.Generator().manual_seed(0), dtype=torch.bfloat16),
            torch.randn(16, generator=torch.Generator().manual_seed(0)).bfloat16(),
        ),
    }
    if device.startswith("cuda"):
        major, minor = torch.cuda.get_device_capability(device)
        record["capability"] = f"{major}.{minor}"
        memory = torch.cuda.get_device_properties(device).total_memory
        record["gpu_memory_gib"] = round(memory / 2**30, 1)
    return record


def noise_in_float32() -> bool:
    """Make reduced-precision pipelines draw the seed's float32 noise, where this torch
    does not already; True when it had to.

    torch before 2.13 draws other normals on CPU for bf16 / fp16 than for float32 (from
    16 values on): the same seed gave a bf16 pipeline another picture (~16 dB against
    fp32 on torch 2.11, the GPU machine's), which hides the arithmetic's drift that the
    PSNR is there to measure. torch 2.13 (the farm's pin) draws the float32 numbers,
    rounded; this does the same on an older torch, for the benchmarks only.
    """
    sample = [
        torch.randn(16, generator=torch.Generator().manual_seed(0), dtype=dtype).float()
        for dtype in (torch.bfloat16, torch.float32)
    ]
    if torch.equal(sample[0], sample[1].bfloat16().float()):
        return False
    import importlib

    import diffusers.utils.torch_utils as torch_utils

    original = torch_utils.randn_tensor

    def randn_tensor(
        shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, layout: Any = None
    ) -> torch.Tensor:
        if dtype in (torch.bfloat16, torch.float16):
            drawn: torch.Tensor = original(shape, generator, device, torch.float32, layout)
            return drawn.to(dtype)
        return original(shape, generator, device, dtype, layout)  # type: ignore[no-any-return]

    # The modules that draw the farm's noise (its pipeline, the samplers that add noise
    # per step) bound the name at import: rebind it there.
    for name in (
        "pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl",
        "pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img",
        "schedulers.scheduling_euler_ancestral_discrete",
        "schedulers.scheduling_dpmsolver_multistep",
        "schedulers.scheduling_ddim",
        "schedulers.scheduling_k_dpm_2_ancestral_discrete",
    ):
        module = importlib.import_module(f"diffusers.{name}")
        if getattr(module, "randn_tensor", None) is original:
            setattr(module, "randn_tensor", randn_tensor)  # noqa: B010
    setattr(torch_utils, "randn_tensor", randn_tensor)  # noqa: B010
    return True
