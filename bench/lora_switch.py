"""What a LoRA switch costs on a warm pipeline, next to the render it precedes.

    python -m bench.lora_switch                      # CPU: the tiny SDXL, tiny LoRAs
    python -m bench.lora_switch --model /models/animagine-xl-3.1 --steps 28 \
        --lora a=/loras/a.safetensors --lora b=/loras/b.safetensors   # a GPU, full size

Measured through the worker's own code (worker/lora_adapters.py): a first load into the
pipeline from the host store (cold), a switch between two loaded sets (``set_adapters``),
a switch back to none, and a render of the bucket at ``--steps`` after each. The goal on
a GPU: a switch under 2% of a 28-step 1024x1024 render. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def _renderer(model: str, loras: dict[str, str], data: Path) -> Any:
    from models.infra.settings import Settings
    from worker.runtime import load_renderer, lora_store

    source = "tiny-sdxl" if model == "tiny-sdxl" else model
    settings = Settings(
        data_dir=data, model="m", models={"m": source}, loras=loras, model_cache_dir=data
    )
    return settings, load_renderer("m", settings, "standard", lora_store(settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny-sdxl")
    parser.add_argument("--lora", action="append", default=[], help="name=source")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", default="256x256")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    loras = dict(item.split("=", 1) for item in args.lora)
    if not loras:  # the tiny LoRAs the tests build
        from tests.tiny_loras import build_tiny_loras
        from worker.tiny_sdxl import ensure_tiny_sdxl

        built = build_tiny_loras(ensure_tiny_sdxl(data / "tiny-sdxl"), data / "loras")
        loras = {"a": str(built.style), "b": str(built.other)}
    settings, renderer = _renderer(args.model, loras, data)
    from models.domain.loras import LoraUse
    from worker.renderer import RenderBatch

    width, height = (int(v) for v in args.size.split("x"))
    uses = {n: (LoraUse(n, 0.8, settings.lora_catalog[n].sha256),) for n in sorted(loras)}
    names = list(uses)

    def timed(label: str, loras: tuple[LoraUse, ...], out: dict[str, Any]) -> None:
        adapters = renderer.adapters
        started = time.perf_counter()
        adapters.activate(loras)
        out[f"{label}_switch_s"] = round(time.perf_counter() - started, 4)
        batch = RenderBatch.of(
            prompts=["1girl, solo"],
            seeds=[1],
            width=width,
            height=height,
            steps=args.steps,
            guidance_scale=7.0,
            sampler="euler_a",
            loras=loras,
        )
        started = time.perf_counter()
        renderer.render(batch)
        out[f"{label}_render_s"] = round(time.perf_counter() - started, 4)

    out: dict[str, Any] = {"model": args.model, "steps": args.steps, "size": args.size}
    timed("warm_none", (), out)
    timed("cold_first", uses[names[0]], out)  # from the host store into the pipeline
    timed("cold_second", uses[names[-1]], out)
    timed("loaded_switch", uses[names[0]], out)  # both loaded: set_adapters only
    timed("to_none", (), out)
    timed("loaded_back", uses[names[-1]], out)
    out["switch_share_of_render"] = round(
        out["loaded_switch_switch_s"] / max(out["loaded_switch_render_s"], 1e-9), 4
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
