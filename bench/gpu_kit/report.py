"""The GPU table of docs/PERFORMANCE.md, from the JSON files a kit run wrote.

    python -m bench.gpu_kit.report DIR                      # print the markdown
    python -m bench.gpu_kit.report DIR --write docs/PERFORMANCE.md

``--write`` replaces what lies between the two ``gpu-kit`` markers of that file. With
no files (no GPU lent yet) every row says so.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- gpu-kit:begin -->", "<!-- gpu-kit:end -->"
NOT_MEASURED = "not measured yet: no GPU lent"
NOT_REACHED = "not reached: the run's deadline came first"
GOAL_IMAGES_PER_S, GOAL_SPEEDUP, GOAL_FARM_SHARE = 1.5, 2.0, 0.95
ROWS = (  # stage, configuration
    ("1_baseline", "plain diffusers fp16"),
    ("2_eager", "our renderer, eager (standard switches)"),
    ("3_compile_default", "standard tier (compile default)"),
    ("6_compile_max_autotune", "standard tier (max-autotune-no-cudagraphs)"),
    ("4_fp8", "fast tier (FP8, torchao)"),
)
Stages = dict[str, dict[str, Any]]


def load(folder: Path) -> Stages:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _why_not(stage: dict[str, Any] | None, stages: Stages) -> str | None:
    if stage is None:
        return NOT_REACHED if stages else NOT_MEASURED
    for key in ("skipped", "stopped", "error"):
        if key in stage:
            return f"{key}: {stage[key]}"
    return None


def _cell(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _baseline_at(stages: Stages, batch: int) -> float | None:
    configs = stages.get("1_baseline", {}).get("configs") or []
    return next((float(c["images_per_s"]) for c in configs if c["batch"] == batch), None)


def _rows(stages: Stages) -> list[str]:
    lines = []
    for name, label in ROWS:
        stage = stages.get(name)
        why = _why_not(stage, stages)
        if why is not None or stage is None:
            lines.append(f"| {label} | | | | | | | {why} |")
            continue
        for c in stage["configs"]:
            base = _baseline_at(stages, c["batch"])
            ratio = None if base is None else c["images_per_s"] / base
            compile_s = _cell(c.get("compile_s"), 0)
            lines.append(
                f"| {label} | {c['batch']} | {c['s_per_image']:.3f} | {c['images_per_s']:.3f} "
                f"| {_cell(ratio)}× | {_cell(c['psnr_vs_fp32'], 1)} | {compile_s} | |"
            )
    farm = stages.get("5_farm")
    why = _why_not(farm, stages)
    if why is not None or farm is None:
        lines.append(f"| the farm, embedded, end to end | | | | | | | {why} |")
    else:
        note = f"GPU busy {farm['gpu_busy_share']:.3f}; {farm['images']} images, {farm['compile']}"
        if "vs_renderer_alone" in farm:
            note += f"; {farm['vs_renderer_alone']:.3f}× the renderer alone"
        lines.append(
            f"| the farm, embedded, end to end | {farm.get('batch', '')} | "
            f"{1 / farm['images_per_s']:.3f} | {farm['images_per_s']:.3f} | | "
            f"{_cell(farm['psnr_vs_fp32'], 1)} | | {note} |"
        )
    return lines


def _goals(stages: Stages) -> list[str]:
    standard = (stages.get("3_compile_default", {}).get("configs") or [None])[-1]
    farm = stages.get("5_farm", {})
    if standard is None:
        why = "the standard tier did not finish in this run" if stages else NOT_MEASURED
        return [
            f"- goals (standard tier ≥ {GOAL_IMAGES_PER_S} images/s, ≥ {GOAL_SPEEDUP}× "
            f"plain diffusers fp16, farm ≥ {GOAL_FARM_SHARE}× the renderer): {why}"
        ]
    base = _baseline_at(stages, standard["batch"])
    speedup = None if base is None else standard["images_per_s"] / base
    share = farm.get("vs_renderer_alone")

    def mark(value: float | None, goal: float) -> str:
        return "–" if value is None else f"{value:.2f} {'✅' if value >= goal else '❌'}"

    return [
        f"- standard tier: {mark(standard['images_per_s'], GOAL_IMAGES_PER_S)} images/s "
        f"(goal ≥ {GOAL_IMAGES_PER_S} on one H100)",
        f"- vs plain diffusers fp16 in the same run: {mark(speedup, GOAL_SPEEDUP)}× "
        f"(goal ≥ {GOAL_SPEEDUP}×)",
        f"- farm end to end vs the renderer alone: {mark(share, GOAL_FARM_SHARE)}× "
        f"(goal ≥ {GOAL_FARM_SHARE}×)",
    ]


def markdown(stages: Stages) -> str:
    env = next((s["env"] for s in stages.values() if "env" in s), None)
    setup = next((s for s in stages.values() if "size" in s), None)
    if env is None or setup is None:
        where = f"{NOT_MEASURED}. Full-size SDXL (random weights), 1024², 28 steps, CFG 7, Euler a."
    else:
        where = (
            f"{env['device']}, torch {env['torch']}, diffusers {env['diffusers']}; "
            f"{setup['size']}, {setup['steps']} steps, CFG {setup['cfg']}, Euler a"
        )
    header = [
        where,
        "",
        "| configuration | batch | s/image | images/s | vs diffusers fp16 | PSNR vs fp32 (dB) "
        "| compile s | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join([*header, *_rows(stages), "", *_goals(stages)]) + "\n"


def write(document: Path, table: str) -> None:
    text = document.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{document} has no {BEGIN} ... {END} section")
    document.write_text(pattern.sub(lambda _: f"{BEGIN}\n{table}{END}", text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", help="the kit's JSON files")
    parser.add_argument("--write", type=Path, help="replace the GPU section of this file")
    args = parser.parse_args(argv)
    table = markdown(load(args.folder) if args.folder else {})
    if args.write:
        write(args.write, table)
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
