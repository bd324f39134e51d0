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

The grammar itself is read in ``models.domain.prompt_editing``. A1111's extra networks
(``<lora:...>``) are taken out of the text before it is scheduled (``prompt_schedule``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from models.domain.loras import without_extra_networks
from models.domain.prompt_editing import Alternate, Item, Scheduled, parse_schedule
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


@dataclass(frozen=True)
class ScheduleText:
    """One entry of a schedule: ``text`` is encoded up to and including ``end_step``."""

    end_step: int
    text: str


Schedule = list[ScheduleText]


def _walk(items: Sequence[Item]) -> Iterator[Scheduled | Alternate]:
    for item in items:
        if isinstance(item, Scheduled):
            yield item
            if item.before is not None:
                yield from _walk(item.before)
            yield from _walk(item.after)
        elif isinstance(item, Alternate):
            yield item
            for option in item.options:
                yield from _walk(option)


def _at_step(step: int, items: Sequence[Item], out: list[str]) -> None:
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Scheduled):
            chosen = (item.before or []) if step <= item.at else item.after
            _at_step(step, chosen, out)
        else:
            _at_step(step, item.options[(step - 1) % len(item.options)], out)


def prompt_schedule(
    text: str, steps: int, hires_steps: int | None = None, *, budget: ScheduleBudget | None = None
) -> Schedule:
    """The web UI's schedule for ``text`` over ``steps`` sampler steps; with
    ``hires_steps``, the hi-res pass's schedule (``steps``: the first pass's).
    ``budget`` is charged for the texts built (``ScheduleTooLong`` past it).

    Extra networks (``<lora:name:weight>``) are taken out first, as A1111 does before it
    schedules: what is encoded never holds them, wherever they were written."""
    text = without_extra_networks(text)
    items = parse_schedule(text)
    length = steps if hires_steps is None else hires_steps
    if items is None:
        return [ScheduleText(length, text)]
    int_offset, float_offset = (0, 0.0) if hires_steps is None else (steps, 1.0)
    boundaries = {length}
    for node in _walk(items):
        if isinstance(node, Alternate):
            boundaries.update(range(1, length + 1))
            continue
        value = float(node.when)
        value = (value - float_offset) * length if "." in node.when else value - int_offset
        # min(length, int(value)) as A1111 has it, without int() of an infinite "1e999".
        node.at = length if value >= length else 0 if value < 1 else int(value)
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
