"""The operator's limits, and the one check every door runs: ``check_limits``.

Every limit holds for what will be rendered, not only for what was sent. A cell's texts
come from the prompt pipeline (``models.domain.prompt_pipeline``: tags and quality tags,
style, wildcards, Prompt S/R), and what the worker encodes are the texts of each step
of their prompt-editing schedules (``models.domain.prompt_schedule``). So the check
builds the grid's texts as the grid will (from the same resolved grid: the same seeds,
so the same wildcard choices) and holds every limit on them:

1. counts: prompts, seeds, steps, cells (the combinatorial wildcards count their values);
2. names: styles, combinatorial wildcards and the wildcards each text uses exist, and the
   wildcard syntax reads; LoRAs (the spec's and each cell text's ``<lora:...>`` tags)
   are enabled, built for the job's model, within the per-cell count (a 422 naming the
   field and the name);
3. length, per cell text, computed before each step builds it where it can (a 10 KB
   request must not make megabytes of text to find out it is too long); the distinct
   text of a job, together; a Prompt S/R search term must occur in a text;
4. per encoded text (each schedule step's): syntax, 75-token chunks; the distinct texts
   the worker encodes count toward the job's text limit.

``Limits`` is plain values built from the ``FARM_*`` settings (``Settings.limits``) and
the operator's prompt library, so the domain never imports configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from models.domain.axes import as_list
from models.domain.grid import ResolvedGrid, cell_keys, resolve
from models.domain.lora_limits import CellLoras, check_spec_loras
from models.domain.prompt_chunks import EstimatedTokens, TokenCounter, count_chunks
from models.domain.prompt_names import check_names
from models.domain.prompt_pipeline import DEFAULT_LIBRARY, CellTexts, PromptLibrary, TextStepError
from models.domain.prompt_schedule import ScheduleBudget, ScheduleTooLong, passes_of
from models.domain.prompt_syntax import PromptSyntaxError, parse_prompt_attention
from models.domain.spec import MAX_SEED, FieldError, JobSpec, SeedRange, SpecError
from models.domain.webhook_urls import private_url_reason

_ESTIMATE: Final = EstimatedTokens()
SCHEDULE_WORK_PER_TEXT_CHAR: Final = 10  # schedule building a job may ask for, per text limit


@dataclass(frozen=True)
class Limits:
    default_model: str
    models: frozenset[str]  # the enabled model names a request may use
    max_grid_cells: int = 10_000
    max_prompts: int = 1_000
    max_prompt_chars: int = 4_000  # per encoded text: after tags, style, wildcards and S/R
    max_prompt_chunks: int = 12  # 75-token chunks per encoded text
    max_job_text_chars: int = 2_000_000  # the distinct texts one job encodes, together
    max_seeds: int = 10_000
    max_steps: int = 150
    max_bulk_jobs: int = 100
    webhook_allow_private: bool = False
    quality_tiers: frozenset[str] = frozenset({"exact", "standard"})  # what workers serve
    library: PromptLibrary = field(default=DEFAULT_LIBRARY)  # styles, wildcards, LoRAs
    max_loras_per_cell: int = 5
    # Each model's base family (models/domain/loras.py ``base_family``): a LoRA built for
    # another is refused. A model missing here (a simulation) takes any.
    model_bases: Mapping[str, str | None] = field(default_factory=dict)


class _Errors:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.found: list[FieldError] = []
        self.named: set[str] = set()

    def add(self, field: str, reason: str) -> None:
        if field not in self.named:  # one reason per field: the first found
            self.named.add(field)
            self.found.append(FieldError(self.prefix + field, reason))

    def raise_any(self) -> None:
        if self.found:
            raise SpecError(self.found)


@dataclass(frozen=True)
class _Origin:
    """Where a cell text came from: the field a client wrote it in, and how it changed."""

    field: str
    after: str  # e.g. " (with Prompt S/R value 1, 'blue')"


@dataclass(frozen=True)
class CheckedJob:
    """A spec that holds every limit: the grid the job is made from (its random seeds
    drawn, so its wildcards resolve as they were checked) and each cell text's chunks."""

    grid: ResolvedGrid
    chunks: dict[str, int]


def check_limits(
    spec: JobSpec, limits: Limits, *, counter: TokenCounter | None = None, prefix: str = ""
) -> dict[str, int]:
    """``check_job``'s chunk counts."""
    return check_job(spec, limits, counter=counter, prefix=prefix).chunks


def check_job(
    spec: JobSpec, limits: Limits, *, counter: TokenCounter | None = None, prefix: str = ""
) -> CheckedJob:
    """Raise ``SpecError`` naming every field that breaks a limit; return the grid the
    job is to be made from and each cell text's chunk count, the most of its schedule's
    steps (for the dry run's estimate).

    ``counter`` counts tokens for the spec's model (its own tokenizer where the caller
    has it); without one the count is ``EstimatedTokens``' estimate.
    """
    errors = _Errors(prefix)
    _check_counts(spec, limits, errors)
    for name, reason in check_names(spec, limits.library):
        errors.add(name, reason)
    model = spec.model or limits.default_model
    loras = CellLoras(
        limits.library.loras, limits.model_bases.get(model), limits.max_loras_per_cell
    )
    for name, reason in check_spec_loras(spec, loras):
        errors.add(name, reason)
    errors.raise_any()
    grid = resolve(spec, default_model=limits.default_model, library=limits.library)
    texts = _cell_texts(grid, limits, errors, loras)
    errors.raise_any()  # nothing below runs on texts that are too long
    chunks = _check_encoded(spec, texts, limits, counter or _ESTIMATE, errors)
    errors.raise_any()
    return CheckedJob(grid, chunks)


def _check_counts(spec: JobSpec, limits: Limits, errors: _Errors) -> None:
    if len(spec.prompts) > limits.max_prompts:
        errors.add("prompts", f"{len(spec.prompts)} prompts; the limit is {limits.max_prompts}")
    seed_count = spec.seeds.count if isinstance(spec.seeds, SeedRange) else len(spec.seeds)
    if seed_count > limits.max_seeds:
        errors.add("seeds", f"{seed_count} seeds; the limit is {limits.max_seeds}")
    elif isinstance(spec.seeds, SeedRange) and spec.seeds.start + spec.seeds.count - 1 > MAX_SEED:
        errors.add("seeds", f"the range runs past the largest seed {MAX_SEED}")
    for i, steps in enumerate(spec.step_list()):
        if steps > limits.max_steps:
            field = f"steps.{i}" if isinstance(spec.steps, list) else "steps"
            errors.add(field, f"{steps} steps; the limit is {limits.max_steps}")
    if spec.hires is not None and (spec.hires.steps or 0) > limits.max_steps:
        errors.add("hires.steps", f"{spec.hires.steps} steps; the limit is {limits.max_steps}")
    cells = spec.cell_count(limits.library)
    if cells > limits.max_grid_cells:
        errors.add("prompts", f"the grid has {cells} cells; the limit is {limits.max_grid_cells}")
    if spec.webhook_url is not None:
        reason = private_url_reason(spec.webhook_url, allow_private=limits.webhook_allow_private)
        if reason:
            errors.add("webhook_url", reason)
    tiers = spec.quality_tier if isinstance(spec.quality_tier, list) else [spec.quality_tier]
    for i, tier in enumerate(tiers):
        if tier not in limits.quality_tiers:
            field = f"quality_tier.{i}" if isinstance(spec.quality_tier, list) else "quality_tier"
            served = ", ".join(sorted(limits.quality_tiers))
            errors.add(field, f"this farm's workers do not serve {tier!r}; they serve: {served}")
    model = spec.model or limits.default_model
    if model not in limits.models:
        enabled = ", ".join(sorted(limits.models))
        errors.add("model", f"unknown model {model!r}; enabled models: {enabled}")


def _cell_texts(
    grid: ResolvedGrid, limits: Limits, errors: _Errors, loras: CellLoras
) -> dict[str, _Origin]:
    """Every cell's texts, built as the grid builds them with each length checked; the
    distinct ones with where they came from. Stops once the job's text is over its limit."""
    pipeline = CellTexts(grid.texts(), limits.library.wildcards, max_chars=limits.max_prompt_chars)
    replace = grid.prompt_replace
    texts: dict[str, _Origin] = {}
    total = 0
    searched: set[int] = set()  # prompts whose texts hold the Prompt S/R search term
    for key in cell_keys(grid):
        field = f"prompts.{key.prompt_index}"
        style = key.settings["style"]
        try:
            before = pipeline.before_replace(
                key.prompt_index, style=style, seed=key.seed, pinned=key.pinned
            )
            if replace and any(replace[0] in text for text in before):
                searched.add(key.prompt_index)
            after = (
                f" (with Prompt S/R value {key.variant}, {replace[key.variant]!r})"
                if key.variant
                else ""
            ) + (f" (with style {style!r})" if style is not None else "")
            cell = (pipeline.replaced(before[0], key.variant, "prompt"), _Origin(field, after))
            negative = pipeline.replaced(before[1], key.variant, "negative")
        except TextStepError as exc:
            errors.add(field if exc.which == "prompt" else "negative_prompt", exc.reason)
            continue
        problem = loras.problem(key.settings, cell[0], negative)
        if problem is not None:
            which, reason = problem
            errors.add(field if which == "prompt" else "negative_prompt", reason + after)
            continue
        for text, origin in (cell, (negative, _Origin("negative_prompt", after))):
            if text not in texts:
                texts[text] = origin
                total += len(text)
        if total > limits.max_job_text_chars:
            errors.add("prompts", _job_text(total, limits, at_least=True))
            return texts
    for i in range(len(grid.prompts)):
        if replace and i not in searched and not errors.found:  # not for texts not built
            errors.add(
                "prompt_replace",
                f"{replace[0]!r} (the first value, searched for) is in neither prompts.{i} "
                "nor the negative prompt (styles and wildcards applied)",
            )
    return texts


def _check_encoded(
    spec: JobSpec,
    texts: dict[str, _Origin],
    limits: Limits,
    counter: TokenCounter,
    errors: _Errors,
) -> dict[str, int]:
    """Syntax and chunks of each text every schedule step encodes; their total length."""
    all_passes = {
        passes_of(sampler, steps, hires=spec.hires is not None, hires_steps=hires_steps)
        for sampler in as_list(spec.sampler)
        for steps in spec.step_list()
        for hires_steps in [spec.hires.steps if spec.hires is not None else None]
    }
    budget = ScheduleBudget(SCHEDULE_WORK_PER_TEXT_CHAR * limits.max_job_text_chars)
    segment_chunks: dict[str, int] = {}
    chunks: dict[str, int] = {}
    total = 0
    for text, origin in texts.items():
        most = 0
        try:
            schedules = [s for p in all_passes for s in p.schedules(text, budget=budget)]
        except ScheduleTooLong as exc:
            errors.add(origin.field, f"{exc}{origin.after}")
            return chunks
        for entry in (e for schedule in schedules for e in schedule):
            segment = entry.text
            where = origin.after
            if segment != text:
                where += f" (in its text up to step {entry.end_step}: {segment[:60]!r})"
            if segment not in segment_chunks:
                try:
                    parse_prompt_attention(segment)
                except PromptSyntaxError as exc:
                    errors.add(origin.field, f"{exc}{where}")
                    segment_chunks[segment] = 0
                    continue
                segment_chunks[segment] = count_chunks(segment, counter)
                total += len(segment)
            n = segment_chunks[segment]
            most = max(most, n)
            if n > limits.max_prompt_chunks:
                errors.add(
                    origin.field,
                    f"{n} chunks of 75 tokens{where}; the limit is {limits.max_prompt_chunks}",
                )
        chunks[text] = max(most, 1)
    if total > limits.max_job_text_chars:
        errors.add("prompts", _job_text(total, limits, at_least=False))
    return chunks


def _job_text(total: int, limits: Limits, *, at_least: bool) -> str:
    return (
        f"the job encodes {'at least ' if at_least else ''}{total} characters of distinct "
        f"prompt text; the limit is {limits.max_job_text_chars}"
    )
