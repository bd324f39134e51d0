"""The text a cell encodes, built in steps: one pipeline for the grid and for its limits.

    prompt entry ─ compose (tags, quality tags) ─ style ─ wildcards ─ Prompt S/R ─▶ cell text
    negative prompt ─────────────────────────── style ─ wildcards ─ Prompt S/R ─▶ cell text

1. compose: an entry's tag fields and the quality preset (``models.domain.tags``);
2. style: the cell's style wraps the prompt and extends the negative
   (``models.domain.styles``);
3. wildcards: variants and ``__lists__`` resolved from a seed derived from the cell's
   seed, with the cell's combinatorial values pinned (``models.domain.wildcards``);
4. Prompt S/R: the cell's replacement value (``models.domain.axes.replace_variants``).

The result is what the cell stores as its prompt and negative prompt. Prompt editing
and alternation stay in it as text: the worker derives each step's text from it
(``models.domain.prompt_schedule``). A1111's ``<lora:name:weight>`` tags stay in it too:
the cell's LoRA set is read from them (``models.domain.loras``), and the schedule takes
them out of the text that is encoded.

Each step is linear in its input and memoised on what it depends on, so a grid of
10,000 cells builds each distinct text once. Given ``max_chars``, a step computes its
result's length before building it where it can (style, S/R: arithmetic; wildcards:
stops as soon as the text passes it) and raises ``TextStepError`` naming the step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from models.domain.loras import NO_LORAS, LoraCatalog
from models.domain.styles import (
    ANIMAGINE_STYLES,
    PLACEHOLDER,
    Style,
    apply_style,
    merged_length,
)
from models.domain.wildcards import (
    ResolvedTooLong,
    Resolver,
    WildcardError,
    derived_seed,
    has_syntax,
)

Which = Literal["prompt", "negative"]
# A cell's combinatorial wildcard values, as (name, value) pairs in axis order.
Pinned = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PromptLibrary:
    """The operator's styles, wildcard lists (models/infra/prompt_library.py loads them)
    and LoRAs (models/infra/loras.py), the names a prompt may use."""

    styles: Mapping[str, Style] = field(default_factory=dict)
    wildcards: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    loras: LoraCatalog = NO_LORAS


DEFAULT_LIBRARY: Final = PromptLibrary(styles={s.name: s for s in ANIMAGINE_STYLES})


class TextStepError(ValueError):
    """A step that cannot build the text, or builds one longer than allowed."""

    def __init__(self, which: Which, reason: str) -> None:
        super().__init__(reason)
        self.which = which
        self.reason = reason


@dataclass(frozen=True)
class GridTexts:
    """What a grid's texts are built from (a ``ResolvedGrid``'s text fields)."""

    prompts: Sequence[str]  # composed: step 1 done
    negative_prompt: str
    styles: Mapping[str, Style]  # the styles the grid uses, by name
    prompt_replace: Sequence[str]  # empty: no Prompt S/R


class CellTexts:
    """Steps 2-4 for each cell; each distinct intermediate text is built once."""

    def __init__(
        self, grid: GridTexts, wildcards: Mapping[str, Sequence[str]], *, max_chars: int | None
    ) -> None:
        self.grid = grid
        self.wildcards = wildcards
        self.max_chars = max_chars
        self._styled: dict[tuple[int, str | None], tuple[str, str]] = {}
        self._resolvers: dict[Pinned, Resolver] = {}
        self._resolved: dict[tuple[str, int, Pinned, Which], str] = {}
        self._replaced: dict[tuple[str, int], str] = {}
        self._has_wildcards: dict[tuple[int, str | None], bool] = {}
        self._cells: dict[tuple[int, str | None, Pinned, int, int | None], tuple[str, str]] = {}

    def texts(
        self, prompt_index: int, *, style: str | None, seed: int, pinned: Pinned, variant: int
    ) -> tuple[str, str]:
        """The cell's prompt and negative prompt (the seed matters only to wildcards)."""
        seeded = self._seeded(prompt_index, style)
        key = (prompt_index, style, pinned, variant, seed if seeded else None)
        found = self._cells.get(key)
        if found is None:
            prompt, negative = self.before_replace(
                prompt_index, style=style, seed=seed, pinned=pinned
            )
            found = (
                self.replaced(prompt, variant, "prompt"),
                self.replaced(negative, variant, "negative"),
            )
            self._cells[key] = found
        return found

    def _seeded(self, prompt_index: int, style: str | None) -> bool:
        key = (prompt_index, style)
        if key not in self._has_wildcards:
            self._has_wildcards[key] = any(map(has_syntax, self.styled(prompt_index, style)))
        return self._has_wildcards[key]

    def before_replace(
        self, prompt_index: int, *, style: str | None, seed: int, pinned: Pinned
    ) -> tuple[str, str]:
        """Steps 2 and 3: the texts Prompt S/R searches."""
        prompt, negative = self.styled(prompt_index, style)
        return (
            self.resolved(prompt, seed, pinned, "prompt"),
            self.resolved(negative, seed, pinned, "negative"),
        )

    # -- 2. style ------------------------------------------------------------------------

    def styled(self, prompt_index: int, style: str | None) -> tuple[str, str]:
        key = (prompt_index, style)
        if key not in self._styled:
            chosen = None if style is None else self.grid.styles[style]
            prompt, negative = self.grid.prompts[prompt_index], self.grid.negative_prompt
            parts: tuple[tuple[Which, str, str], ...] = (
                ("prompt", chosen.prompt if chosen else PLACEHOLDER, prompt),
                ("negative", chosen.negative_prompt if chosen else PLACEHOLDER, negative),
            )
            for which, part, text in parts:
                after = f" with style {style!r}" if chosen else ""
                self._check(merged_length(part, text), which, after)
            self._styled[key] = apply_style(chosen, prompt, negative)
        return self._styled[key]

    # -- 3. wildcards --------------------------------------------------------------------

    def resolved(self, text: str, seed: int, pinned: Pinned, which: Which) -> str:
        if not has_syntax(text):
            return text
        key = (text, seed, pinned, which)
        if key not in self._resolved:
            resolver = self._resolvers.get(pinned)
            if resolver is None:
                resolver = Resolver(self.wildcards, fixed=dict(pinned), max_chars=self.max_chars)
                self._resolvers[pinned] = resolver
            try:
                self._resolved[key] = resolver.resolve(text, derived_seed(seed, which))
            except ResolvedTooLong as exc:
                raise TextStepError(
                    which,
                    f"{exc} (seed {seed}); the limit is {exc.max_chars} characters",
                ) from None
            except WildcardError as exc:
                raise TextStepError(which, str(exc)) from None
        return self._resolved[key]

    # -- 4. Prompt S/R -------------------------------------------------------------------

    def replaced(self, text: str, variant: int, which: Which) -> str:
        values = self.grid.prompt_replace
        if variant == 0 or not values or values[0] not in text:
            return text  # value 0 is the searched text itself: no change
        key = (text, variant)
        if key not in self._replaced:
            search, value = values[0], values[variant]
            length = len(text) + text.count(search) * (len(value) - len(search))
            self._check(length, which, f" with Prompt S/R value {variant} ({value[:40]!r})")
            self._replaced[key] = text.replace(search, value)
        return self._replaced[key]

    def _check(self, length: int, which: Which, after: str) -> None:
        if self.max_chars is not None and length > self.max_chars:
            raise TextStepError(which, too_long(length, self.max_chars, after))


def too_long(length: int, max_chars: int, after: str = "") -> str:
    return (
        f"{length} characters{after} once composed with its tags and quality tags; the "
        f"limit is {max_chars}"
    )
