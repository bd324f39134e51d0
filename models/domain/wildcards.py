r"""Wildcards and variants, as the Dynamic Prompts extension defines them, resolved from a seed.

* ``{red|green|blue}``: one option at random; ``{0.5::red|blue}`` weights an option
  (default 1); ``{2$$a|b|c}`` picks two distinct options joined by ``", "``,
  ``{1-3$$a|b|c}`` between one and three (``{-2$$`` is ``1-2``, ``{2-$$`` up to all),
  ``{2$$ and $$a|b|c}`` joins with `` and ``; more than there are gives them all;
* ``__name__``: one value of the operator's list ``name`` (``__animals/cats__`` for a
  list in a sub-folder, ``__colours*__`` for every list the glob matches);
  ``{2$$__name__}`` picks two distinct values of it;
* values and options may hold more of the same syntax, resolved in turn (nested
  wildcards), at most ``MAX_DEPTH`` deep;
* ``\{`` ``\}`` ``\|`` are literal (the backslash is kept: A1111's attention parser then
  reads ``{`` ``}`` ``|`` as text), as is a ``|`` in square brackets, so A1111's
  alternation ``[a|b]`` can sit inside an option.

Resolution is a pure function of the template, the lists and a seed: the farm derives
the seed from the cell's seed (``derived_seed``), so a re-render of the same spec and
seed gets the same text. Dynamic Prompts' variables, parameterised templates and
samplers (``~``, ``@``) are not supported; their text stays as it is.
"""

from __future__ import annotations

import fnmatch
import hashlib
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from models.domain.prompt_syntax import MAX_NESTING

MAX_DEPTH: Final = 10  # nested wildcards; deeper is taken for a cycle
MAX_EXPANSIONS: Final = 10_000  # choices and references per resolved text

_REF: Final = re.compile(r"__([A-Za-z0-9*][\w\-/.*]*?)__")
_LITERAL: Final = re.compile(r"[^\\{}|\[\]_]+|_")
_COUNT: Final = re.compile(r"\s*(\d*)(?:(-)(\d*))?\$\$(?:((?:(?!\$\$).)*)\$\$)?", re.S)
_WEIGHT: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)::")


class WildcardError(ValueError):
    """A template that cannot be resolved; ``name`` is the wildcard at fault, if one is."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class ResolvedTooLong(ValueError):
    """The resolved text passed the length it may have."""

    def __init__(self, max_chars: int) -> None:
        super().__init__(f"more than {max_chars} characters once its wildcards are resolved")
        self.max_chars = max_chars


@dataclass(frozen=True)
class _Ref:
    name: str


@dataclass(frozen=True)
class _Option:
    weight: float
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Variant:
    options: tuple[_Option, ...]
    low: int = 1
    high: int | None = 1  # None: as many as there are options
    separator: str = ", "
    values_of: str | None = None  # {2$$__name__}: the options are the list's values


_Node = str | _Ref | _Variant


def has_syntax(text: str) -> bool:
    """Whether ``text`` may hold a variant or a wildcard (quick, may say yes wrongly)."""
    return "{" in text or "__" in text


@dataclass
class _Frame:
    start: int
    options: list[list[_Node]] = field(default_factory=lambda: [[]])
    square: int = 0  # "[" open inside this variant: its "|" is text


def parse_template(text: str) -> tuple[_Node, ...]:
    """The template's text, variants and references, in one left-to-right pass."""
    top: list[_Node] = []
    frames: list[_Frame] = []
    pos, n = 0, len(text)
    while pos < n:
        items = frames[-1].options[-1] if frames else top
        ch = text[pos]
        if ch == "\\":
            items.append(text[pos : pos + 2])
            pos += 2
        elif ch == "{":
            if len(frames) >= MAX_NESTING:
                raise WildcardError(f"variants nested more than {MAX_NESTING} deep")
            frames.append(_Frame(pos))
            pos += 1
        elif ch == "}" and frames:
            frame = frames.pop()
            (frames[-1].options[-1] if frames else top).append(_variant(frame.options))
            pos += 1
        elif ch == "|" and frames and frames[-1].square == 0:
            frames[-1].options.append([])
            pos += 1
        elif ch == "_" and (ref := _REF.match(text, pos)) is not None:
            items.append(_Ref(ref.group(1)))
            pos = ref.end()
        else:
            if frames and ch in "[]":
                frames[-1].square = max(0, frames[-1].square + (1 if ch == "[" else -1))
            run = _LITERAL.match(text, pos)
            end = run.end() if run is not None else pos + 1
            items.append(text[pos:end])
            pos = end
    if frames:
        raise WildcardError(
            f"the '{{' at character {frames[-1].start} is never closed (write \\{{ for a brace)"
        )
    return tuple(top)


def _variant(raw: list[list[_Node]]) -> _Variant:
    low, separator = 1, ", "
    high: int | None = 1
    first = raw[0]
    if first and isinstance(first[0], str) and (count := _COUNT.match(first[0])) is not None:
        lo, dash, hi, sep = count.groups()
        low = int(lo) if lo else 1
        high = (int(hi) if hi else None) if dash else low
        separator = ", " if sep is None else sep
        rest = first[0][count.end() :]
        raw[0] = ([rest] if rest else []) + first[1:]
    options = []
    for items in raw:
        weight = 1.0
        if items and isinstance(items[0], str) and (w := _WEIGHT.match(items[0])) is not None:
            weight = float(w.group(1))
            items = ([items[0][w.end() :]] if items[0][w.end() :] else []) + items[1:]
        options.append(_Option(weight, tuple(items)))
    # {2$$__name__}: one option that is one reference (and blanks) picks from its list.
    only = [i for i in options[0].items if not (isinstance(i, str) and not i.strip())]
    single = len(options) == 1 and len(only) == 1 and isinstance(only[0], _Ref)
    values_of = only[0].name if single and isinstance(only[0], _Ref) else None
    return _Variant(tuple(options), low, high, separator, values_of)


def references(nodes: Sequence[_Node]) -> Iterator[str]:
    """The wildcard names a parsed template uses itself (not through the lists)."""
    for node in nodes:
        if isinstance(node, _Ref):
            yield node.name
        elif isinstance(node, _Variant) and node.values_of is not None:
            yield node.values_of
        elif isinstance(node, _Variant):
            for option in node.options:
                yield from references(option.items)


def derived_seed(seed: int, stream: str) -> int:
    """The seed a cell's ``stream`` ("prompt", "negative") resolves from: its own, not the
    image's noise seed, and a pure function of it."""
    digest = hashlib.sha256(f"farm-wildcards:{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _pick(rng: random.Random, weights: Sequence[float]) -> int:
    total = sum(weights)
    if total <= 0:
        return rng.randrange(len(weights))
    target = rng.random() * total
    for index, weight in enumerate(weights):
        target -= weight
        if target < 0:
            return index
    return len(weights) - 1


class Resolver:
    """Resolves templates against the operator's lists; ``fixed`` pins lists to one value
    (a combinatorial wildcard's value for the cell)."""

    def __init__(
        self,
        lists: Mapping[str, Sequence[str]],
        *,
        fixed: Mapping[str, str] | None = None,
        max_chars: int | None = None,
    ) -> None:
        self.lists = lists
        self.fixed = dict(fixed or {})
        self.max_chars = max_chars
        self._parsed: dict[str, tuple[_Node, ...]] = {}
        self._globs: dict[str, list[str]] = {}

    def parsed(self, text: str) -> tuple[_Node, ...]:
        if text not in self._parsed:
            self._parsed[text] = parse_template(text)
        return self._parsed[text]

    def values(self, name: str) -> list[str]:
        """The values ``__name__`` draws from (a glob's: every matching list's, in order)."""
        if name in self.fixed:
            return [self.fixed[name]]
        if "*" not in name:
            if name not in self.lists:
                raise WildcardError(f"unknown wildcard __{name}__", name)
            return list(self.lists[name])
        if name not in self._globs:
            names = sorted(n for n in self.lists if fnmatch.fnmatchcase(n, name))
            if not names:
                raise WildcardError(f"no wildcard list matches __{name}__", name)
            self._globs[name] = [v for n in names for v in self.lists[n]]
        return self._globs[name]

    def resolve(self, text: str, seed: int) -> str:
        state = _State(random.Random(seed), self.max_chars)
        self._emit(self.parsed(text), state, depth=0)
        return "".join(state.out)

    def _emit(self, nodes: Sequence[_Node], state: _State, depth: int) -> None:
        for node in nodes:
            if isinstance(node, str):
                state.write(node)
            elif isinstance(node, _Ref):
                state.count(node.name)
                values = self.values(node.name)
                if not values:
                    raise WildcardError(f"the wildcard __{node.name}__ has no values", node.name)
                value = values[state.rng.randrange(len(values))]
                self._nested(value, node.name, state, depth)
            else:
                self._choose(node, state, depth)

    def _nested(self, text: str, name: str, state: _State, depth: int) -> None:
        if depth >= MAX_DEPTH:
            raise WildcardError(f"wildcards nested more than {MAX_DEPTH} deep at __{name}__", name)
        if has_syntax(text):
            self._emit(self.parsed(text), state, depth + 1)
        else:
            state.write(text)

    def _choose(self, variant: _Variant, state: _State, depth: int) -> None:
        state.count(None)
        if variant.values_of is not None:
            texts: list[str | tuple[_Node, ...]] = list(self.values(variant.values_of))
            weights = [1.0] * len(texts)
        else:
            texts = [o.items for o in variant.options]
            weights = [o.weight for o in variant.options]
        high = len(texts) if variant.high is None else variant.high
        count = min(
            len(texts), high if high <= variant.low else state.rng.randint(variant.low, high)
        )
        for k in range(count):
            index = _pick(state.rng, weights)
            if k:
                state.write(variant.separator)
            chosen = texts.pop(index)
            weights.pop(index)
            if isinstance(chosen, str):
                self._nested(chosen, variant.values_of or "", state, depth)
            else:
                self._emit(chosen, state, depth)


@dataclass
class _State:
    rng: random.Random
    max_chars: int | None
    out: list[str] = field(default_factory=list)
    length: int = 0
    expansions: int = 0

    def write(self, text: str) -> None:
        self.length += len(text)
        if self.max_chars is not None and self.length > self.max_chars:
            raise ResolvedTooLong(self.max_chars)
        self.out.append(text)

    def count(self, name: str | None) -> None:
        self.expansions += 1
        if self.expansions > MAX_EXPANSIONS:
            raise WildcardError(
                f"more than {MAX_EXPANSIONS} wildcard and variant choices in one text", name
            )
