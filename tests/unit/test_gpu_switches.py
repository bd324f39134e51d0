"""Every GPU-path switch forced on, on CPU, with the tiny model, against eager fp32.

Each switch is turned on by resolving options with explicit values (what a worker
applies on CUDA), alone and all together, and the pixels are compared with eager
fp32 on the same seeds. Tolerances, from measurement (64², 2 steps, seed pairs
1-2, 3-4, 5-6, 7-8):

- float32 switches (SDPA, channels_last, fused QKV, compile) only reorder float32
  sums (~1e-7 relative): a pixel moves at most across one 8-bit rounding boundary.
  Measured: max 1 level, PSNR 87-92 dB (or identical). Allowed: 2 levels, 70 dB.
- bf16 keeps 8 significant bits (relative rounding 2^-9, ~0.2% per operation).
  Measured: max 7-9 levels, PSNR 46-48 dB, alone and with every switch and compile.
  Allowed: PSNR >= 40 dB (twice the measured RMS error) and max 32 levels.
- Neither tolerance passes a wrong image: another seed measured PSNR 15.5-16.4 dB.

Compiling costs minutes on 2 cores (70-90 s of CPU each cold, ~15 s from the cache):
the standard tier compiles once per session (``standard_tier_compiled``), fp32 once
in a process of its own (``tests/unit/compile_probe.py``), then again from its cache.
Both cold compiles start in the background as the session begins
(tests/cold_compiles.py).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import (
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
)

from bench.gpu_kit.common import psnr
from tests import cold_compiles
from tests.cold_compiles import BACKGROUND, Compile
from tests.tiers import COMPILE_TIMEOUT_S, COMPILE_WARNINGS, SEEDS, CompiledTier, load, render
from worker.gpu_options import (
    TIER_NAMES,
    GpuOptions,
    resolve_gpu_options,
    tier_options,
    tiers_available,
    torchao_missing,
)

pytestmark = [pytest.mark.filterwarnings(f) for f in COMPILE_WARNINGS]

FP32_MAX_LEVELS, FP32_MIN_PSNR = 2, 70.0
BF16_MAX_LEVELS, BF16_MIN_PSNR = 32, 40.0
WRONG_IMAGE_PSNR = 20.0  # another seed is below this: the tolerances above discriminate


def forced(
    *, dtype: str = "fp32", sdpa: str = "off", channels_last: str = "off", fuse_qkv: str = "off"
) -> GpuOptions:
    """Eager, everything off but what is named: explicit values apply on CPU too."""
    return resolve_gpu_options(
        device="cpu",
        dtype=dtype,
        sdpa=sdpa,
        channels_last=channels_last,
        fuse_qkv=fuse_qkv,
        compile_mode="off",
    )


@pytest.fixture(scope="module")
def tiny(model_cache: Path) -> Path:
    return model_cache / "tiny-sdxl"


@pytest.fixture(scope="module")
def eager_fp32(tiny: Path) -> np.ndarray:
    return render(load(tiny, forced()))


def assert_close(
    pixels: np.ndarray, reference: np.ndarray, *, levels: int, min_psnr: float
) -> None:
    assert pixels.shape == reference.shape
    worst = int(np.abs(pixels - reference).max())
    assert worst <= levels, f"max difference {worst} levels"
    assert psnr(pixels, reference) >= min_psnr


def processors(module: Any) -> set[type]:
    return {type(p) for p in module.attn_processors.values()}


def test_the_tolerances_reject_another_seed(tiny: Path, eager_fp32: np.ndarray) -> None:
    other = render(load(tiny, forced()), seeds=[s + 100 for s in SEEDS])
    assert psnr(other, eager_fp32) < WRONG_IMAGE_PSNR


def test_sdpa_computes_the_attention_of_the_classic_processor(tiny: Path) -> None:
    # diffusers already loads SDPA on torch 2: the reference is the classic attention
    # (explicit softmax(QK^T)V), so the switch is compared with something else.
    classic = load(tiny, forced())
    classic.unet.set_attn_processor(AttnProcessor())
    classic.vae.set_attn_processor(AttnProcessor())
    pipe = load(tiny, forced(sdpa="on"))
    assert processors(pipe.unet) == {AttnProcessor2_0}
    assert_close(render(pipe), render(classic), levels=FP32_MAX_LEVELS, min_psnr=FP32_MIN_PSNR)


def test_channels_last_alone(tiny: Path, eager_fp32: np.ndarray) -> None:
    pipe = load(tiny, forced(channels_last="on"))
    conv = pipe.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    assert_close(render(pipe), eager_fp32, levels=FP32_MAX_LEVELS, min_psnr=FP32_MIN_PSNR)


def test_fused_qkv_alone(tiny: Path, eager_fp32: np.ndarray) -> None:
    pipe = load(tiny, forced(fuse_qkv="on"))
    assert processors(pipe.unet) == {FusedAttnProcessor2_0}
    assert all(hasattr(p, "to_qkv") or hasattr(p, "to_kv") for p in attention_modules(pipe))
    assert_close(render(pipe), eager_fp32, levels=FP32_MAX_LEVELS, min_psnr=FP32_MIN_PSNR)


def attention_modules(pipe: Any) -> list[Any]:
    from diffusers.models.attention_processor import Attention

    return [m for m in pipe.unet.modules() if isinstance(m, Attention)]


def test_bf16_alone(tiny: Path, eager_fp32: np.ndarray) -> None:
    pipe = load(tiny, forced(dtype="bf16"))
    assert pipe.unet.dtype == pipe.vae.dtype == torch.bfloat16
    assert_close(render(pipe), eager_fp32, levels=BF16_MAX_LEVELS, min_psnr=BF16_MIN_PSNR)


@pytest.mark.timeout(COMPILE_TIMEOUT_S)
def test_all_switches_and_compile_together(
    standard_tier_compiled: CompiledTier, eager_fp32: np.ndarray
) -> None:
    tier = standard_tier_compiled
    switches = ("dtype", "tf32", "sdpa", "channels_last", "fuse_qkv", "compile_mode")
    assert [getattr(tier.options, name) for name in switches] == [
        "bf16",
        True,
        True,
        True,
        True,
        "default",
    ]
    assert type(tier.pipe.unet).__name__ == "OptimizedModule"  # torch.compile's wrapper
    assert processors(tier.pipe.unet._orig_mod) == {FusedAttnProcessor2_0}
    assert tier.pipe.unet._orig_mod.dtype == torch.bfloat16
    assert_close(tier.pixels, eager_fp32, levels=BF16_MAX_LEVELS, min_psnr=BF16_MIN_PSNR)
    # Compiled once: rendering again reuses the graph and gives the same pixels.
    assert np.array_equal(render(tier.pipe), tier.pixels)


def probe(
    job: Compile, done: subprocess.CompletedProcess[str] | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """``tests/unit/compile_probe.py`` in a process of its own: warm up and render,
    compiling into the job's cache (``done``: its run, if it ran in the background)."""
    done = done or job.run()
    assert done.returncode == 0, done.stderr[-3000:]
    assert job.pixels is not None
    record: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return record, np.load(job.pixels).astype(np.int16)


@pytest.mark.timeout(2 * COMPILE_TIMEOUT_S)
def test_compile_warm_up_and_a_second_process_from_the_cache(
    request: pytest.FixtureRequest, tiny: Path, tmp_path: Path
) -> None:
    from tests.unit.compile_probe import BUCKET
    from tests.unit.compile_probe import SEEDS as PROBE_SEEDS

    # The first, cold run: started in the background as the session began, when it did.
    background = request.config.stash.get(BACKGROUND, None)
    if background is not None and background.has("probe"):
        done, job = background.result("probe")
        first, compiled = probe(job, done)
    else:
        job = cold_compiles.probe(tiny, tmp_path / "inductor", tmp_path / "first.npy")
        first, compiled = probe(job)
    # The warm-up compiled the bucket (a cold cache: misses only), so the render after
    # it compiled nothing new.
    assert list(first["warmed"]) == [BUCKET]
    assert first["inductor"].get("fxgraph_cache_miss", 0) >= 1
    assert first["inductor"].get("fxgraph_cache_hit", 0) == 0
    assert first["graphs_compiled_by_render"] == 0
    # compile alone (fp32) is fp32 arithmetic reordered: against eager, same seeds.
    size = int(BUCKET.split("x")[0])
    eager = render(load(tiny, forced()), seeds=PROBE_SEEDS, size=size)
    assert_close(compiled, eager, levels=FP32_MAX_LEVELS, min_psnr=FP32_MIN_PSNR)

    second, again = probe(cold_compiles.probe(tiny, job.cache_dir, tmp_path / "second.npy"))
    # Inductor's own counters: every graph came from the cache, none was compiled.
    assert second["inductor"].get("fxgraph_cache_hit", 0) == first["inductor"]["fxgraph_cache_miss"]
    assert second["inductor"].get("fxgraph_cache_miss", 0) == 0
    assert np.array_equal(again, compiled)  # the same pixels


def test_the_tiers_are_the_documented_switches() -> None:
    exact = tier_options("exact", device="cpu")
    assert (exact.dtype, exact.tf32, exact.compile_mode, exact.fp8) == ("fp32", False, "", False)
    standard = tier_options("standard", device="cuda", cache_dir=Path("/c"))
    assert standard.describe() == (
        "bf16, tf32, sdpa, channels_last, fuse_qkv, compile=default/fullgraph"
    )
    assert standard.cache_dir == Path("/c")
    fast = tier_options("fast", device="cuda")
    assert fast == replace(tier_options("standard", device="cuda"), fp8=True)
    # An operator's compile mode applies to a compiled tier; the exact tier stays eager.
    assert tier_options("standard", device="cuda", compile_mode="max-autotune").compile_mode == (
        "max-autotune"
    )
    assert tier_options("exact", device="cuda", compile_mode="max-autotune").compile_mode == ""
    with pytest.raises(ValueError, match="quality tier must be one of"):
        tier_options("turbo", device="cpu")  # type: ignore[arg-type]


def test_a_cpu_serves_exact_and_standard_and_says_why_not_fast() -> None:
    available = tiers_available("cpu")
    assert list(available) == list(TIER_NAMES)
    assert available["exact"] is None
    assert available["standard"] is None
    assert available["fast"] is not None and "compute capability >= 8.9" in available["fast"]


def test_fp8_is_never_on_unless_asked_for() -> None:
    assert not resolve_gpu_options(device="cuda", dtype="bf16").fp8
    assert resolve_gpu_options(device="cpu", fp8="on").fp8
    # torchao is optional: without it the reason says so instead of failing an import.
    missing = torchao_missing()
    assert missing is None or missing.startswith("torchao does not import")
