"""The device kit's run: measure the GPU path in stages under one deadline.

Each stage writes ``<out>/<stage>.json`` as soon as it ends (or why it was skipped),
so whatever ran is kept even when the machine's time runs out. Before a stage starts
the run checks that its estimate fits in the time left (compile estimates follow the
compile time measured in stage 3); at the deadline a watchdog records the stage in
flight as stopped and ends the process.

Stages, in the order they run (most valuable first; the two optional ones last):

    0_model                  random-weight SDXL saved to a folder; fp32 reference (exact)
    1_baseline               plain diffusers fp16, batch 1 and 4
    2_eager                  our renderer, standard tier's switches, eager
    3_compile_default        standard tier: torch.compile mode "default", with compile time
    5_farm                   the whole farm, embedded, a 1024² grid end to end
    4_fp8                    the fast tier (FP8 through torchao), where the GPU can
    6_compile_max_autotune   standard tier with max-autotune-no-cudagraphs

    python -m bench.gpu_kit.run --out $OUT --ends-at EPOCH          # on the GPU machine
    python -m bench.gpu_kit.run --tiny --out DIR --seconds 300      # CPU rehearsal
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.gpu_kit.common import Budget, environment, free, noise_in_float32
from bench.gpu_kit.farm_stage import stage_farm
from bench.gpu_kit.stages import (
    KitConfig,
    KitState,
    stage_baseline,
    stage_model,
    stage_renderer,
)
from worker.gpu_options import Tier, tiers_available

log = logging.getLogger("gpu_kit")
StageFn = Callable[[KitConfig, Budget, KitState], dict[str, Any]]


def _compiled(tier: Tier, mode: str) -> StageFn:
    def run(cfg: KitConfig, budget: Budget, state: KitState) -> dict[str, Any]:
        return stage_renderer(
            cfg, budget, state, tier=tier, compile_mode=mode, batches=(cfg.batch,)
        )

    return run


def _eager(cfg: KitConfig, budget: Budget, state: KitState) -> dict[str, Any]:
    return stage_renderer(
        cfg, budget, state, tier="standard", compile_mode="off", batches=cfg.batches
    )


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn
    gpu_estimate_s: float  # one H100, full-size SDXL, 1024², 28 steps
    tiny_estimate_s: float  # the CPU rehearsal
    tier: Tier | None = None  # a tier the device must serve, else the stage is skipped


# GPU estimates: the first device run (H100, 2026-11-27) took 55 s for 0_model, 36 s
# for 2_eager, 172 s for 1_baseline (141 s of it a cuDNN search, gone: common.py) and
# more than 274 s for 3_compile_default, which the deadline stopped.
STAGES = (
    Stage("0_model", stage_model, 70, 20),
    Stage("1_baseline", stage_baseline, 60, 10),
    Stage("2_eager", _eager, 45, 10),
    Stage("3_compile_default", _compiled("standard", "default"), 300, 240),
    Stage("5_farm", stage_farm, 120, 30),
    Stage("4_fp8", _compiled("fast", "default"), 200, 240, tier="fast"),
    Stage("6_compile_max_autotune", _compiled("standard", "max-autotune-no-cudagraphs"), 360, 600),
)


def estimate(stage: Stage, cfg: KitConfig, state: KitState, overrides: dict[str, float]) -> float:
    if stage.name in overrides:
        return overrides[stage.name]
    base = stage.tiny_estimate_s if cfg.tiny else stage.gpu_estimate_s
    stage3 = state.results.get("3_compile_default", {})
    compiled = (stage3.get("configs") or [{}])[0]
    cold = not stage3.get("inductor", {}).get("fxgraph_cache_hit")  # a cached one is quick
    if "compile_s" in compiled and cold and stage.name in ("4_fp8", "6_compile_max_autotune"):
        # Measured beats guessed: FP8 compiles about as much again, autotuning ~3x.
        factor = 1.5 if stage.name == "4_fp8" else 3.0
        return factor * float(compiled["compile_s"]) + 4 * float(compiled["s_per_batch"]) + 30
    return base


class Recorder:
    """Writes each stage's JSON; the watchdog uses it to record the stage in flight."""

    def __init__(self, out: Path, cfg: KitConfig) -> None:
        self.out = out
        self.env = environment(cfg.device)
        self.setup = {
            "size": f"{cfg.size}x{cfg.size}",
            "steps": cfg.steps,
            "cfg": 7.0,
            "sampler": "euler_a",
        }
        self.current: tuple[str, float] | None = None
        self.lock = threading.Lock()

    def write(self, name: str, record: dict[str, Any]) -> None:
        with self.lock:
            document = {"stage": name, **self.setup, **record, "env": self.env}
            path = self.out / f"{name}.json"
            path.write_text(json.dumps(document, indent=1, default=str) + "\n")
            log.info("%s: %s", name, json.dumps(record, default=str)[:400])


def run(cfg: KitConfig, out: Path, budget: Budget, overrides: dict[str, float]) -> KitState:
    out.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(out, cfg)
    state = KitState()
    watchdog = threading.Timer(max(budget.left(), 0.0), _stop_at_deadline, [recorder, budget])
    watchdog.daemon = True
    watchdog.start()
    try:
        for stage in STAGES:
            needed = estimate(stage, cfg, state, overrides)
            if stage.name != "0_model" and state.reference is None:
                recorder.write(stage.name, {"skipped": "no model: stage 0_model did not run"})
                continue
            unable = tiers_available(cfg.device)[stage.tier] if stage.tier else None
            if unable is not None:
                recorder.write(stage.name, {"skipped": unable})
                continue
            if not budget.allows(needed):
                reason = f"needs ~{needed:.0f} s, {max(budget.left(), 0):.0f} s left"
                recorder.write(stage.name, {"skipped": reason})
                continue
            recorder.current = (stage.name, time.monotonic())
            started = time.monotonic()
            try:
                result = stage.run(cfg, budget, state)
            except Exception as exc:
                log.exception("stage %s failed", stage.name)
                result = {"error": repr(exc), "traceback": traceback.format_exc()[-4000:]}
            recorder.current = None
            free(cfg.device)  # the stage's pipelines are unreferenced now
            result["stage_s"] = round(time.monotonic() - started, 1)
            result["estimate_s"] = round(needed)
            state.results[stage.name] = result
            recorder.write(stage.name, result)
    finally:
        watchdog.cancel()
    return state


def _stop_at_deadline(recorder: Recorder, budget: Budget) -> None:
    """The deadline passed mid-stage (a compile, a render): keep what ran and end now."""
    if recorder.current is not None:
        name, started = recorder.current
        spent = time.monotonic() - started
        recorder.write(name, {"stopped": f"the deadline came {spent:.0f} s into the stage"})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the JSON files go")
    parser.add_argument("--tiny", action="store_true", help="tiny model: the CPU rehearsal")
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--ends-at", type=float, help="deadline, seconds since the epoch")
    when.add_argument("--seconds", type=float, help="deadline, seconds from now")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--batches", default="1,4", help="baseline and eager; last: the rest")
    parser.add_argument("--iters", type=int, default=2, help="timed calls after the warm one")
    parser.add_argument("--farm-images", type=int, default=32)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temp dir)")
    parser.add_argument(
        "--estimate", action="append", default=[], metavar="STAGE=SECONDS", help="override"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "api.requests"):  # a line per poll of the farm stage
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # loading bars in the log
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and not args.tiny:
        parser.error("no CUDA device: full-size SDXL needs one (--tiny rehearses on CPU)")
    seconds = args.seconds if args.seconds is not None else 540.0
    if args.ends_at is not None:
        seconds = args.ends_at - time.time()
    budget = Budget(time.monotonic() + seconds)
    overrides = {k: float(v) for k, _, v in (e.partition("=") for e in args.estimate)}
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-kit-"))
    # One compile cache for every stage, the farm's warm-up included (it hits stage 3's).
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(work / "inductor"))
    cfg = KitConfig(
        device=device,
        tiny=args.tiny,
        size=args.size,
        steps=args.steps,
        batches=tuple(int(b) for b in args.batches.split(",")),
        iters=args.iters,
        work=work,
        farm_images=args.farm_images,
    )
    patched = noise_in_float32()
    log.info("gpu kit on %s, %.0f s to the deadline, scratch %s", device, seconds, work)
    log.info("bf16/fp16 noise drawn in float32 by the kit (this torch differs): %s", patched)
    state = run(cfg, args.out, budget, overrides)
    failed = [name for name, r in state.results.items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
