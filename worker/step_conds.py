"""Prompt editing and alternation on a diffusers pipeline: the conditioning of each step.

A cell's prompt and negative prompt keep A1111's ``[from:to:when]`` and ``[a|b]`` as text;
``models.domain.prompt_schedule`` derives the text of every sampler step of each pass
(the hi-res pass has its own timeline). Here:

1. every distinct text of a shard's steps is encoded once (``PromptEncoder``: both
   encoders, long prompts, BREAK), so a step's embeddings are exactly its text's;
2. cells whose steps need different numbers of 77-token chunks render in separate
   pipeline calls (``profile``), so no cell is ever padded for a neighbour;
3. a pass starts with its first step's embeddings, and the pipeline's
   ``callback_on_step_end`` hands it the next step's ``prompt_embeds`` (CFG: negative then
   prompt, as the pipeline concatenates them) and pooled ``add_text_embeds`` whenever a
   cell's text changes. Diffusers' loop calls the model once per iteration, which is
   A1111's step counter (second-order samplers: ``2 * steps - 1`` iterations).

At each step a cell's prompt and negative are padded to the same number of chunks with
the empty prompt's chunks (A1111's ``pad_cond_uncond``); ``pads`` says whether that
changed anything, which the PNG's infotext records as ``Pad conds: True``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.domain.cells import RenderParams
from models.domain.prompt_schedule import passes_of, prompt_schedule, step_texts
from worker.prompt_encoding import BatchEmbeddings, EncodedPrompt, PromptEncoder

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class CellSteps:
    """One cell's texts at each step: ``prompts[pass][step]``, ``negatives[pass][step]``."""

    prompts: tuple[tuple[str, ...], ...]
    negatives: tuple[tuple[str, ...], ...]

    def texts(self) -> Iterable[str]:
        return (t for steps in (*self.prompts, *self.negatives) for t in steps)


def _pass_texts(text: str, cell: RenderParams) -> tuple[tuple[str, ...], ...]:
    passes = passes_of(
        cell.sampler,
        cell.steps,
        hires=cell.hires_scale is not None,
        hires_steps=cell.hires_steps,
    )
    found = [tuple(step_texts(prompt_schedule(text, passes.first), passes.first))]
    if passes.hires is not None:
        hires = prompt_schedule(text, passes.first, passes.hires)
        found.append(tuple(step_texts(hires, passes.hires)))
    return tuple(found)


def cell_steps(cell: RenderParams) -> CellSteps:
    return CellSteps(_pass_texts(cell.prompt, cell), _pass_texts(cell.negative_prompt, cell))


@dataclass(frozen=True)
class Encoded:
    """A shard's distinct texts, encoded once: prompts, and negatives (an empty negative
    may be zeros, so the two are kept apart)."""

    prompts: dict[str, EncodedPrompt]
    negatives: dict[str, EncodedPrompt]

    def profile(self, steps: CellSteps) -> tuple[int, ...]:
        """Chunks at each step of each pass: cells with equal profiles batch together."""
        return tuple(
            max(self.prompts[p].chunks, self.negatives[n].chunks)
            for prompts, negatives in zip(steps.prompts, steps.negatives, strict=True)
            for p, n in zip(prompts, negatives, strict=True)
        )

    def pads(self, steps: CellSteps) -> bool:
        """Whether any step pads the prompt or the negative to the other's length."""
        return any(
            self.prompts[p].chunks != self.negatives[n].chunks
            for prompts, negatives in zip(steps.prompts, steps.negatives, strict=True)
            for p, n in zip(prompts, negatives, strict=True)
        )


class StepConds:
    """One pass's embeddings for a batch, step by step, and the callback that switches them."""

    def __init__(
        self,
        encoder: PromptEncoder,
        encoded: Encoded,
        cells: Sequence[CellSteps],
        pass_index: int,
    ) -> None:
        by_texts: dict[tuple[tuple[str, str], ...], BatchEmbeddings] = {}
        self.steps: list[BatchEmbeddings] = []
        for step in range(len(cells[0].prompts[pass_index])):
            key = tuple((c.prompts[pass_index][step], c.negatives[pass_index][step]) for c in cells)
            if key not in by_texts:
                by_texts[key] = encoder.batch(
                    [p for p, _ in key], [n for _, n in key], encoded.prompts, encoded.negatives
                )
            self.steps.append(by_texts[key])

    @property
    def first(self) -> BatchEmbeddings:
        return self.steps[0]

    def callback(self, between_steps: Callable[[], None]) -> Callable[..., dict[str, Any]]:
        """``callback_on_step_end``: ``between_steps`` (which raises to stop a cancelled
        job), then the next step's embeddings where they differ from this step's."""

        def on_step_end(pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            between_steps()
            following = step + 1
            if following < len(self.steps) and self.steps[following] is not self.steps[step]:
                kwargs.update(_pipeline_inputs(self.steps[following], pipe, kwargs["latents"]))
            return kwargs

        return on_step_end


def _pipeline_inputs(
    embeds: BatchEmbeddings, pipe: Any, latents: torch.Tensor
) -> dict[str, torch.Tensor]:
    """What the pipeline's loop holds for a step: with CFG, negative then prompt."""
    import torch

    prompt, pooled = embeds.prompt_embeds, embeds.pooled_prompt_embeds
    if pipe.do_classifier_free_guidance:
        prompt = torch.cat([embeds.negative_prompt_embeds, prompt], dim=0)
        pooled = torch.cat([embeds.negative_pooled_prompt_embeds, pooled], dim=0)
    return {
        "prompt_embeds": prompt.to(latents.device),
        "add_text_embeds": pooled.to(latents.device),
    }
