r"""A1111's prompt-editing grammar, read without lark: the constructs a prompt holds.

The web UI parses prompts for editing with this lark grammar
(``modules/prompt_parser.py``)::

    !start: (prompt | /[][():]/+)*
    prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
    !emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
    scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
    alternate: "[" prompt ("|" [prompt])+ "]"
    plain: /([^\\\[\]():|]|\\.)+/

This is a recursive-descent reading of it that prefers a construct wherever one parses
(as the web UI's parse does) and memoises each bracket's construct, so a prompt is read
in time linear in its length. Outside any construct, ``[ ] ( ) :`` are text; a ``|``
there, or a backslash that escapes nothing at the very end, makes the grammar read
nothing (``parse_schedule`` returns None: one literal text). Brackets nested more than
``MAX_NESTING`` deep make the prompt literal here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from models.domain.prompt_syntax import MAX_NESTING

__all__ = ["Alternate", "Item", "Scheduled", "parse_schedule"]

# "\s* NUMBER \s* ]" after the last ":" of [from:to:when]; NUMBER is lark's SIGNED_NUMBER.
_WHEN: Final = re.compile(r"\s*([+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)\s*\]")
_PLAIN: Final = re.compile(r"[^\\\[\]():|]+")
_STOP: Final = frozenset("])|:")  # what ends a prompt inside a construct


class _Unreadable(Exception):
    """The grammar does not read the text: it is one literal text."""


@dataclass
class Scheduled:
    before: list[Item] | None
    after: list[Item]
    when: str
    at: int = 0  # the step it switches after, once resolved for a step count


@dataclass
class Alternate:
    options: list[list[Item]]


Item = str | Scheduled | Alternate


@dataclass
class _Parser:
    text: str
    constructs: dict[int, tuple[list[Item], int] | None] = field(default_factory=dict)
    depth: int = 0

    def top(self) -> list[Item]:
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

    def plain(self, pos: int, items: list[Item]) -> int:
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

    def prompt(self, pos: int) -> tuple[list[Item], int]:
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

    def construct(self, pos: int) -> tuple[list[Item], int] | None:
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

    def _construct(self, pos: int) -> tuple[list[Item], int] | None:
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
                return [Alternate(options)], end + 1
            return None
        if closer == ":":  # scheduled: "[" [prompt ":"] prompt ":" [WS] NUMBER [WS] "]"
            when = _WHEN.match(text, end + 1)
            if when is not None:
                return [Scheduled(None, first, when.group(1))], when.end()
            second, end2 = self.prompt(end + 1)
            if end2 < n and text[end2] == ":":
                when = _WHEN.match(text, end2 + 1)
                if when is not None:
                    return [Scheduled(first, second, when.group(1))], when.end()
        return None


def parse_schedule(text: str) -> list[Item] | None:
    """The prompt's constructs, or None when the grammar reads none (one literal text)."""
    if "[" not in text:  # no construct can switch anything
        return None
    try:
        items = _Parser(text).top()
    except _Unreadable:
        return None
    return items if any(not isinstance(i, str) for i in items) else None
