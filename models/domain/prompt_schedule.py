r"""A1111's prompt editing and alternation: which text is encoded at which denoising step.

The web UI (``modules/prompt_parser.py``, ``get_learned_conditioning_prompt_schedules``)
parses a prompt with a lark grammar and derives a *schedule*: ``[(end_step, text), ...]``,
the text to encode until each step. This module computes the same schedules without
lark, in time linear in the prompt (for a given number of steps):

* ``[from:to:when]`` is ``from`` until step ``when``, then ``to``; ``[to:when]`` adds
  ``to`` after ``when``; ``[from::when]`` removes ``from`` after it. ``when`` with a
  ``.`` is a fraction of the steps (``int(when * steps)``), without one a step number;
  it is capped at the steps, and a value under 1 never switches (always ``to``);
* ``[a|b|c]`` alternates every step (step 1 ``a``, step 2 ``b``, ...); an option may be
  empty (``[fe|]male``);
* the rest, including ``(x:1.2)`` attention brackets, stays as it is; brackets that
  close nothing, ``:`` and ``(`` ``[`` outside a construct are text;
* a prompt that the grammar cannot read at all (a ``|`` outside brackets, an unfinished
  ``[a|b``, a trailing lone backslash) is one literal text for every step.

Picking the text for a step follows ``reconstruct_cond_batch``: at sampler step ``i``
(0-based) the first entry with ``i <= end_step`` is used, so ``[a:b:3]`` encodes ``a``
for steps 0-3. Second-order samplers count two steps per step (``total_steps``).

The hi-res pass has its own timeline (web UI >= 1.6, "new" scheduling): a ``when`` with a
``.`` is read as ``when - 1`` of the hi-res steps (``[a:b:1.5]`` switches half way through
the second pass), one without is read as ``when - first pass steps``; what the first pass
switched stays switched.

Brackets nested more than ``MAX_NESTING`` deep make the prompt literal here (the web UI
would read them); the attention parser refuses such a prompt at submit anyway.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from models.domain.prompt_syntax import MAX_NESTING
from models.domain.samplers import total_steps

__all__ = [
    "Passes",
    "Schedule",
    "ScheduleBudget",
    "ScheduleText",
    "ScheduleTooLong",
    "parse_schedule",
    "passes_of",
    "prompt_schedule",
    "step_texts",
]

# "\s* NUMBER \s* ]" after the last ":" of [from:to:when]; NUMBER is lark's SIGNED_NUMBER.
_WHEN: Final = re.compile(r"\s*([+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)\s*\]")
_PLAIN: Final = re.compile(r"[^\\\[\]():|]+")
_STOP: Final = frozenset("])|:")  # what ends a prompt inside a construct


class ScheduleTooLong(ValueError):
    """Building a job's schedules would take more than its ``ScheduleBudget``."""


class ScheduleBudget:
    """Characters a job's schedules may build (each boundary builds one text): a cap on
    the work a request can ask for, e.g. thousands of alternations at 150 steps."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise ScheduleTooLong("prompt editing and alternation: too many texts to schedule")


class _Unreadable(Exception):
    """The grammar does not read the text: it is one literal text."""


@dataclass
class _Scheduled:
    before: list[_Item] | None
    after: list[_Item]
    when: str
    at: int = 0  # the step it switches after, once resolved for a step count


@dataclass
class _Alternate:
    options: list[list[_Item]]


_Item = str | _Scheduled | _Alternate


@dataclass
class _Parser:
    text: str
    constructs: dict[int, tuple[list[_Item], int] | None] = field(default_factory=dict)
    depth: int = 0

    def top(self) -> list[_Item]:
        """``start: (prompt | /[][():]/+)*``: a construct where one parses, else text."""
        text, items, pos, n = self.text, [], 0, len(self.text)
        while pos < n:
            ch = text[pos]
            if ch in "[(":
                found = self.construct(pos)
                if found is not None:
                    items.extend(found[0])
                    pos = found[1]
                    continue
                items.append(ch)
                pos += 1
            elif ch in "]):":
                items.append(ch)
                pos += 1
            else:
                pos = self.plain(pos, items)
        return items

    def plain(self, pos: int, items: list[_Item]) -> int:
        """Text up to the next bracket, ``:`` or ``|``; ``\\x`` is text. Raises on a ``|``
        outside brackets or a lone trailing backslash, as the grammar does."""
        text = self.text
        ch = text[pos]
        if ch == "|":
            raise _Unreadable
        if ch == "\\":
            if pos + 1 >= len(text) or text[pos + 1] == "\n":
                raise _Unreadable
            items.append(text[pos : pos + 2])
            return pos + 2
        end = _PLAIN.match(text, pos)
        assert end is not None
        items.append(end.group())
        return end.end()

    def prompt(self, pos: int) -> tuple[list[_Item], int]:
        """``prompt``: text and constructs, up to ``] ) | :`` or the first bracket that is
        not a construct (which the caller then refuses)."""
        text, items, n = self.text, [], len(self.text)
        while pos < n and text[pos] not in _STOP:
            if text[pos] in "[(":
                found = self.construct(pos)
                if found is None:
                    break
                items.extend(found[0])
                pos = found[1]
            else:
                pos = self.plain(pos, items)
        return items, pos

    def construct(self, pos: int) -> tuple[list[_Item], int] | None:
        """The construct opening at ``pos`` and where it ends; None if there is none."""
        if pos not in self.constructs:
            if self.depth >= MAX_NESTING:
                raise _Unreadable
            self.depth += 1
            try:
                self.constructs[pos] = self._construct(pos)
            finally:
                self.depth -= 1
        return self.constructs[pos]

    def _construct(self, pos: int) -> tuple[list[_Item], int] | None:
        text, n = self.text, len(self.text)
        first, end = self.prompt(pos + 1)
        closer = text[end] if end < n else ""
        if text[pos] == "(":  # emphasized: "(" prompt ")" | "(" prompt ":" prompt ")"
            if closer == ")":
                return ["(", *first, ")"], end + 1
            if closer == ":":
                second, end2 = self.prompt(end + 1)
                if end2 < n and text[end2] == ")":
                    return ["(", *first, ":", *second, ")"], end2 + 1
            return None
        if closer == "]":  # emphasized: "[" prompt "]"
            return ["[", *first, "]"], end + 1
        if closer == "|":  # alternate: "[" prompt ("|" [prompt])+ "]"
            options = [first]
            while end < n and text[end] == "|":
                option, end = self.prompt(end + 1)
                options.append(option)
            if end < n and text[end] == "]":
                return [_Alternate(options)], end + 1
            return None
        if closer == ":":  # scheduled: "[" [prompt ":"] prompt ":" [WS] NUMBER [WS] "]"
            when = _WHEN.match(text, end + 1)
            if when is not None:
                return [_Scheduled(None, first, when.group(1))], when.end()
            second, end2 = self.prompt(end + 1)
            if end2 < n and text[end2] == ":":
                when = _WHEN.match(text, end2 + 1)
                if when is not None:
                    return [_Scheduled(first, second, when.group(1))], when.end()
        return None


@dataclass(frozen=True)
class ScheduleText:
    """One entry of a schedule: ``text`` is encoded up to and including ``end_step``."""

    end_step: int
    text: str


Schedule = list[ScheduleText]


def parse_schedule(text: str) -> list[_Item] | None:
    """The prompt's constructs, or None when the grammar reads none (one literal text)."""
    if "[" not in text:  # no construct can switch anything
        return None
    try:
        items = _Parser(text).top()
    except _Unreadable:
        return None
    return items if any(not isinstance(i, str) for i in items) else None


def _walk(items: Sequence[_Item]) -> Iterator[_Scheduled | _Alternate]:
    for item in items:
        if isinstance(item, _Scheduled):
            yield item
            if item.before is not None:
                yield from _walk(item.before)
            yield from _walk(item.after)
        elif isinstance(item, _Alternate):
            yield item
            for option in item.options:
                yield from _walk(option)


def _at_step(step: int, items: Sequence[_Item], out: list[str]) -> None:
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, _Scheduled):
            chosen = (item.before or []) if step <= item.at else item.after
            _at_step(step, chosen, out)
        else:
            _at_step(step, item.options[(step - 1) % len(item.options)], out)


def prompt_schedule(
    text: str, steps: int, hires_steps: int | None = None, *, budget: ScheduleBudget | None = None
) -> Schedule:
    """The web UI's schedule for ``text`` over ``steps`` sampler steps; with
    ``hires_steps``, the hi-res pass's schedule (``steps``: the first pass's).
    ``budget`` is charged for the texts built (``ScheduleTooLong`` past it)."""
    items = parse_schedule(text)
    length = steps if hires_steps is None else hires_steps
    if items is None:
        return [ScheduleText(length, text)]
    int_offset, float_offset = (0, 0.0) if hires_steps is None else (steps, 1.0)
    boundaries = {length}
    for node in _walk(items):
        if isinstance(node, _Alternate):
            boundaries.update(range(1, length + 1))
            continue
        value = float(node.when)
        value = (value - float_offset) * length if "." in node.when else value - int_offset
        node.at = min(length, int(value))
        if node.at >= 1:
            boundaries.add(node.at)
    if budget is not None:
        budget.spend(len(boundaries) * len(text))
    schedule: Schedule = []
    for step in sorted(boundaries):
        out: list[str] = []
        _at_step(step, items, out)
        schedule.append(ScheduleText(step, "".join(out)))
    return schedule


def step_texts(schedule: Schedule, steps: int) -> list[str]:
    """The text of each sampler step ``0 .. steps - 1`` (``reconstruct_cond_batch``: the
    first entry with ``step <= end_step``; past the last, the first entry)."""
    texts: list[str] = []
    index = 0
    for step in range(steps):
        while index < len(schedule) and step > schedule[index].end_step:
            index += 1
        texts.append(schedule[index].text if index < len(schedule) else schedule[0].text)
    return texts


@dataclass(frozen=True)
class Passes:
    """The steps each pass's schedule spans: A1111's ``total_steps`` of the first pass,
    and of the hi-res pass (None without one)."""

    first: int
    hires: int | None = None

    def schedules(self, text: str, *, budget: ScheduleBudget | None = None) -> list[Schedule]:
        """``text``'s schedule for each pass, the first pass's first."""
        found = [prompt_schedule(text, self.first, budget=budget)]
        if self.hires is not None:
            found.append(prompt_schedule(text, self.first, self.hires, budget=budget))
        return found


def passes_of(sampler: str, steps: int, *, hires: bool, hires_steps: int | None) -> Passes:
    """The passes of a cell with these settings (``hires_steps`` None: the cell's steps)."""
    first = total_steps(sampler, steps)
    return Passes(first, total_steps(sampler, hires_steps or steps) if hires else None)
