"""The operator's limits, and the one check every door runs: ``check_limits``.

Every limit holds for what will be rendered, not only for what was sent: the text a
cell encodes is its prompt entry composed with tags and quality tags, then Prompt S/R
applied, so lengths, syntax and 75-token chunks are checked on those texts. Lengths
after Prompt S/R are computed before any variant is built (a 10 KB request must not
make megabytes of text to find out it is too long), and every step is linear in the
text it reads.

``Limits`` is plain values built from the ``FARM_*`` settings (``Settings.limits``), so
the domain never imports configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from models.domain.animagine import DEFAULT_NEGATIVE_PROMPT
from models.domain.axes import replace_variants
from models.domain.prompt_chunks import EstimatedTokens, TokenCounter, count_chunks
from models.domain.prompt_syntax import PromptSyntaxError, parse_prompt_attention
from models.domain.spec import MAX_SEED, FieldError, JobSpec, SeedRange, SpecError
from models.domain.tags import compose
from models.domain.webhook_urls import private_url_reason

_ESTIMATE: Final = EstimatedTokens()


@dataclass(frozen=True)
class Limits:
    default_model: str
    models: frozenset[str]  # the enabled model names a request may use
    max_grid_cells: int = 10_000
    max_prompts: int = 1_000
    max_prompt_chars: int = 4_000  # per encoded text: after tags, quality tags and S/R
    max_prompt_chunks: int = 12  # 75-token chunks per encoded text
    max_job_text_chars: int = 2_000_000  # the distinct texts one job encodes, together
    max_seeds: int = 10_000
    max_steps: int = 150
    max_bulk_jobs: int = 100
    webhook_allow_private: bool = False
    quality_tiers: frozenset[str] = frozenset({"exact", "standard"})  # what workers serve


@dataclass(frozen=True)
class _Text:
    """One text the job encodes before Prompt S/R, and the field a client wrote it in."""

    field: str
    text: str


class _Errors:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.found: list[FieldError] = []
        self._named: set[str] = set()

    def add(self, field: str, reason: str) -> None:
        if field not in self._named:  # one reason per field: the first found
            self._named.add(field)
            self.found.append(FieldError(self.prefix + field, reason))

    def raise_any(self) -> None:
        if self.found:
            raise SpecError(self.found)


def check_limits(
    spec: JobSpec,
    limits: Limits,
    *,
    counter: TokenCounter | None = None,
    prefix: str = "",
) -> dict[str, int]:
    """Raise ``SpecError`` naming every field that breaks a limit; return each encoded
    text's chunk count (for the dry run's estimate).

    ``counter`` counts tokens for the spec's model (its own tokenizer where the caller
    has it); without one the count is ``EstimatedTokens``' estimate.
    """
    errors = _Errors(prefix)
    _check_counts(spec, limits, errors)
    texts = _encoded_texts(spec)
    for item in texts:
        if len(item.text) > limits.max_prompt_chars:
            errors.add(item.field, _too_long(len(item.text), limits, ""))
    replace = spec.replace_list()
    total = _check_replaced_lengths(texts, replace, limits, errors)
    if total > limits.max_job_text_chars:
        errors.add(
            "prompts",
            f"the job encodes {total} characters of distinct prompt text; the limit is "
            f"{limits.max_job_text_chars}",
        )
    errors.raise_any()  # nothing below runs on texts that are too long
    chunks: dict[str, int] = {}
    for item in texts:
        for k, variant in enumerate(replace_variants(item.text, replace)):
            if variant in chunks:
                continue
            after = f" (with Prompt S/R value {k}, {replace[k]!r})" if k else ""
            try:
                parse_prompt_attention(variant)
            except PromptSyntaxError as exc:
                errors.add(item.field, f"{exc}{after}")
                continue
            chunks[variant] = n = count_chunks(variant, counter or _ESTIMATE)
            if n > limits.max_prompt_chunks:
                errors.add(
                    item.field,
                    f"{n} chunks of 75 tokens{after}; the limit is {limits.max_prompt_chunks}",
                )
    errors.raise_any()
    return chunks


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
    cells = spec.cell_count()
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


def _encoded_texts(spec: JobSpec) -> list[_Text]:
    """The prompts as they are encoded (tags composed, quality tags added), and the
    negative prompt, before Prompt S/R."""
    quality, position = spec.quality_tags, spec.quality_tags_position
    texts = [
        _Text(f"prompts.{i}", compose(entry, quality_tags=quality, position=position))
        for i, entry in enumerate(spec.prompts)
    ]
    negative = DEFAULT_NEGATIVE_PROMPT if spec.negative_prompt is None else spec.negative_prompt
    texts.append(_Text("negative_prompt", negative))
    return texts


def _check_replaced_lengths(
    texts: list[_Text], replace: list[str], limits: Limits, errors: _Errors
) -> int:
    """Each text's length under each Prompt S/R value, by arithmetic (no text is built);
    returns the total length of the distinct texts the job encodes."""
    total = 0
    seen: set[str] = set()
    for item in texts:
        if item.text in seen:
            continue
        seen.add(item.text)
        found = item.text.count(replace[0]) if replace else 0
        if not found:  # one text, whatever the S/R values
            total += len(item.text)
            continue
        for k, value in enumerate(replace):  # value 0 is the searched text: no change
            length = len(item.text) + found * (len(value) - len(replace[0]))
            total += length
            if length > limits.max_prompt_chars:
                after = f" with Prompt S/R value {k} ({value[:40]!r})"
                errors.add(item.field, _too_long(length, limits, after))
                break
    return total


def _too_long(length: int, limits: Limits, after: str) -> str:
    return (
        f"{length} characters{after} once composed with its tags and quality tags; the "
        f"limit is {limits.max_prompt_chars}"
    )
