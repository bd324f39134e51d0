"""Padded or unpadded conds: what A1111's ``pad_cond_uncond`` changes, on the tiny model.

The farm pads the shorter of a cell's prompt and negative prompt with the empty prompt's
chunks, so that classifier-free guidance runs cond and uncond through the UNet in one
batch (diffusers' way; A1111 with "Pad conds" on, which the infotext then says). A1111's
default leaves them unpadded: where their lengths differ it calls the UNet twice, each at
its own length. This renders the same cells both ways, unpadded by trimming each half of
the UNet's text input back to its own length (a forward wrapper on this script's
pipeline), and reports how far the pixels move and what each way costs.

    python -m bench.pad_conds                      # 6 seeds, 8 steps, 128 px, CPU
    python -m bench.pad_conds --seeds 2 --steps 2 --size 64
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from bench._common import emit
from worker.renderer import DiffusersRenderer, RenderBatch
from worker.tiny_sdxl import build_tiny_sdxl

LONG = ", ".join(["long hair", "blue eyes", "smile", "solo", "school uniform"] * 14)
# (name, prompt, negative): which of the two the renderer pads.
CASES = [
    ("equal", "1girl, solo, smile", "lowres, bad anatomy"),
    ("prompt_longer", LONG, "lowres, bad anatomy"),
    ("negative_longer", "1girl, solo, smile", LONG),
]


@contextmanager
def unpadded(pipe: Any, negative_tokens: int, prompt_tokens: int) -> Iterator[None]:
    """CFG's two halves through the UNet apart, each cut to its own length (A1111's
    behaviour without ``pad_cond_uncond``); one cell per call."""
    original = pipe.unet.forward

    def forward(
        sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, **kw: Any
    ) -> Any:
        added = kw.pop("added_cond_kwargs")
        halves = []
        for index, tokens in ((0, negative_tokens), (1, prompt_tokens)):
            part = slice(index, index + 1)
            halves.append(
                original(
                    sample[part],
                    timestep,
                    encoder_hidden_states[part, :tokens],
                    added_cond_kwargs={k: v[part] for k, v in added.items()},
                    **kw,
                )[0]
            )
        return (torch.cat(halves),)

    pipe.unet.forward = forward
    try:
        yield
    finally:
        del pipe.unet.forward  # the class's forward again


def render(
    renderer: DiffusersRenderer, prompt: str, negative: str, seed: int, args: argparse.Namespace
) -> np.ndarray:
    batch = RenderBatch.of(
        prompts=[prompt],
        negative_prompts=[negative],
        seeds=[seed],
        width=args.size,
        height=args.size,
        steps=args.steps,
        guidance_scale=7.0,
        sampler="euler_a",
    )
    [image] = renderer.render(batch)
    return np.asarray(image, dtype=np.int16)


def run_case(
    renderer: DiffusersRenderer, prompt: str, negative: str, args: argparse.Namespace
) -> dict[str, Any]:
    encoder = renderer.encoder
    tokens = (encoder.encode_negative(negative).chunks * 77, encoder.encode(prompt).chunks * 77)
    diffs, seed_diffs, padded_s, unpadded_s = [], [], [], []
    previous: np.ndarray | None = None
    for seed in range(args.seeds):
        started = time.perf_counter()
        padded = render(renderer, prompt, negative, seed, args)
        padded_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        with unpadded(renderer.pipe, *tokens):
            alone = render(renderer, prompt, negative, seed, args)
        unpadded_s.append(time.perf_counter() - started)
        diffs.append(np.abs(padded - alone))
        if previous is not None:
            seed_diffs.append(float(np.abs(padded - previous).mean()))
        previous = padded
    every = np.stack(diffs)
    return {
        "negative_tokens": tokens[0],
        "prompt_tokens": tokens[1],
        "mean_abs_diff": round(float(every.mean()), 3),
        "max_abs_diff": int(every.max()),
        "share_over_8_levels": round(float((every > 8).mean()), 4),
        "seed_to_seed_mean_abs_diff": round(statistics.fmean(seed_diffs), 3)
        if seed_diffs
        else None,
        "padded_s_per_image": round(statistics.median(padded_s), 4),
        "unpadded_s_per_image": round(statistics.median(unpadded_s), 4),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    renderer = DiffusersRenderer(build_tiny_sdxl(), model_name="tiny-sdxl")
    render(renderer, "warm up", "", 0, args)
    cases = {name: run_case(renderer, p, n, args) for name, p, n in CASES}
    result = {"seeds": args.seeds, "steps": args.steps, "size": args.size, "cases": cases}
    longer = cases["prompt_longer"]
    emit(
        "pad_conds",
        result,
        f"equal lengths: max diff {cases['equal']['max_abs_diff']} (the two ways agree); "
        f"prompt 3 chunks vs negative 1: mean {longer['mean_abs_diff']} levels "
        f"(seed to seed {longer['seed_to_seed_mean_abs_diff']})",
    )
    return result


if __name__ == "__main__":
    main()
