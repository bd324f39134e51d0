"""The LoRA limits every door checks (``models.domain.limits.check_job`` calls these).

A request's LoRAs are enabled names, built for the job's model's family, at most
``Limits.max_loras_per_cell`` on any cell, none named twice on one cell; the spec's are
checked field by field (``loras.0.name``), each cell's ``<lora:...>`` tags on the texts
the prompt pipeline built (styles, wildcards and Prompt S/R applied), once per distinct
text. A tag in a negative prompt is refused: A1111 applies the prompt's only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from models.domain.loras import (
    LoraCheck,
    LoraError,
    LoraInfo,
    LoraSet,
    merge_loras,
    prompt_loras,
)
from models.domain.spec import JobSpec

Which = Literal["prompt", "negative"]


class CellLoras:
    """Checks LoRAs against the operator's catalog, for one job's model."""

    def __init__(
        self, catalog: Mapping[str, LoraInfo], model_base: str | None, max_per_cell: int
    ) -> None:
        self.check = LoraCheck(catalog, model_base)
        self.max_per_cell = max_per_cell
        self._seen: dict[tuple[LoraSet, LoraSet | None, str], str | None] = {}

    def too_many(self, count: int, after: str = "") -> str | None:
        if count <= self.max_per_cell:
            return None
        return f"{count} LoRAs on one cell{after}; the limit is {self.max_per_cell}"

    def problem(
        self, settings: Mapping[str, Any], prompt: str, negative: str
    ) -> tuple[Which, str] | None:
        """Why a cell's LoRAs cannot be used, and in which of its texts (None: they can)."""
        if "<" in negative and _has_tags(negative):
            return "negative", "<lora:...> belongs in the prompt (A1111 applies the prompt's)"
        job: LoraSet = settings["loras"]
        axis: LoraSet | None = settings["lora_sets"]
        key = (job, axis, prompt)
        if key not in self._seen:
            self._seen[key] = self._problem(job, axis, prompt)
        reason = self._seen[key]
        return None if reason is None else ("prompt", reason)

    def _problem(self, job: LoraSet, axis: LoraSet | None, prompt: str) -> str | None:
        try:
            tags = self.check.all(prompt_loras(prompt))
            count = len(merge_loras(job, axis or (), tags))
        except LoraError as exc:
            return str(exc)
        return self.too_many(count, " with its <lora:...> tags")


def _has_tags(text: str) -> bool:
    try:
        return bool(prompt_loras(text))
    except LoraError:
        return True


def check_spec_loras(spec: JobSpec, loras: CellLoras) -> list[tuple[str, str]]:
    """(field, reason) for the spec's ``loras`` and ``lora_sets``."""
    found: list[tuple[str, str]] = []
    named = [(f"loras.{i}", lora) for i, lora in enumerate(spec.loras)]
    for j, values in enumerate(spec.lora_sets or []):
        named += [(f"lora_sets.{j}.{k}", lora) for k, lora in enumerate(values)]
    for where, lora in named:
        try:
            loras.check.use(lora.use())
        except LoraError as exc:
            found.append((f"{where}.name", str(exc)))
    job = {lora.name for lora in spec.loras}
    for j, values in enumerate(spec.lora_sets or [[]]):
        where = "loras" if spec.lora_sets is None else f"lora_sets.{j}"
        shared = sorted(job & {lora.name for lora in values})
        reason = (
            f"LoRA {shared[0]!r} is in both loras and lora_sets.{j}"
            if shared
            else loras.too_many(len(job) + len(values))
        )
        if reason is not None:
            found.append((where, reason))
    return found
