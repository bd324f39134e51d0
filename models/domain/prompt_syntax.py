r"""AUTOMATIC1111-compatible prompt attention syntax (pure Python, no torch).

Animagine XL 3.1 prompts are written for the AUTOMATIC1111 web UI, so the farm
parses them exactly the way ``modules/prompt_parser.py::parse_prompt_attention``
does (the version with ``\s*`` around the explicit weight, web UI >= 1.6):

* ``(x)`` multiplies the weight of ``x`` by 1.1, ``[x]`` by ``1 / 1.1``;
* ``(x:1.3)`` multiplies it by 1.3 (only round brackets take a number);
  brackets nest and their factors multiply;
* ``\(`` ``\)`` ``\[`` ``\]`` ``\\`` are the literal characters;
* brackets still open at the end of the text are closed there, while a
  closing bracket with nothing to close is literal text;
* the word ``BREAK`` (upper case, on word boundaries) becomes the marker
  ``("BREAK", -1.0)`` and swallows the whitespace around it;
* adjacent runs with equal weights are merged, and an empty result is
  ``[("", 1.0)]``.

The floating-point products are formed in the same order as in the web UI,
so weights are bit-for-bit identical and runs merge exactly where they merge
there.  Quirks that callers must know about (all faithful to the web UI):

* a lone backslash that escapes nothing is dropped: ``a\b`` -> ``ab``;
* ``BREAK`` inside brackets is multiplied like any other run, e.g.
  ``(a BREAK b)`` yields ``("BREAK", -1.1)``, which is *not* a chunk break
  (A1111's chunker tests ``weight == -1``) but the literal word "BREAK";
* a malformed explicit weight such as ``(a:1.2.3)`` or ``(a:.)`` is an error
  (the web UI raises ``ValueError`` from ``float``); here it raises
  :class:`PromptSyntaxError`, a ``ValueError`` subclass;
* ``(a:1e3)`` is not a weight (no exponent support): it is the text
  ``a:1e3`` weighted 1.1;
* runs may be empty strings (e.g. around ``BREAK``), and runs whose
  brackets cancel out (``([a])``) merge back into their neighbours.

One difference, on purpose: brackets nested more than ``MAX_NESTING`` deep are a
:class:`PromptSyntaxError`. The web UI multiplies every run inside a bracket when
the bracket closes, so its cost grows with depth x length (quadratic for a prompt
of thousands of unclosed ``(``); capping the depth keeps every step here linear in
the prompt's length. Real prompts nest a handful of levels.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "BREAK_TEXT",
    "BREAK_WEIGHT",
    "MAX_NESTING",
    "ROUND_BRACKET_MULTIPLIER",
    "SQUARE_BRACKET_MULTIPLIER",
    "PromptSyntaxError",
    "WeightedText",
    "escape_attention",
    "is_break",
    "parse_prompt_attention",
    "strip_attention",
]

WeightedText = tuple[str, float]
"""One run of prompt text and the attention weight that applies to it."""

ROUND_BRACKET_MULTIPLIER: Final[float] = 1.1
SQUARE_BRACKET_MULTIPLIER: Final[float] = 1 / 1.1
BREAK_TEXT: Final[str] = "BREAK"
BREAK_WEIGHT: Final[float] = -1.0
MAX_NESTING: Final[int] = 32  # open brackets at once (see the module docstring)


class PromptSyntaxError(ValueError):
    """An explicit attention weight that is not a number, e.g. ``(a:1.2.3)``, or
    brackets nested deeper than ``MAX_NESTING``."""


# One token per match; every character of the input belongs to exactly one
# token.  The order of the alternatives matters and follows the web UI's.
_TOKEN_RE: Final = re.compile(
    r"""
      (?P<escape>\\[()\[\]\\]?)              # \( \) \[ \] \\ or a lone backslash
    | (?P<open_round>\()
    | (?P<open_square>\[)
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)      # ":1.3)" closes a round bracket
    | (?P<close_round>\))
    | (?P<close_square>\])
    | (?P<text>[^\\()\[\]:]+)
    | (?P<colon>:)
    """,
    re.VERBOSE,
)

# The web UI splits on r"\s*\bBREAK\b\s*"; a leading "\s*" backtracks on every space
# of a long run of spaces (quadratic). Splitting on the word alone and stripping the
# whitespace around each cut gives the same parts in linear time.
_BREAK_RE: Final = re.compile(r"\bBREAK\b")

_ESCAPABLE_RE: Final = re.compile(r"[\\()\[\]]")


def _split_on_break(text: str) -> list[str]:
    r"""``re.split(r"\s*\bBREAK\b\s*", text)`` without its backtracking."""
    parts = _BREAK_RE.split(text)
    last = len(parts) - 1
    if last == 0:
        return parts
    # str.strip and the regex's \s agree on what is whitespace (both use str.isspace).
    return [
        (part.lstrip() if i > 0 else part).rstrip() if i < last else part.lstrip()
        for i, part in enumerate(parts)
    ]


def _parse_weight(number: str) -> float:
    try:
        return float(number)
    except ValueError:
        raise PromptSyntaxError(f"invalid attention weight {number!r}") from None


def parse_prompt_attention(text: str) -> list[WeightedText]:
    """Split ``text`` into ``(run, weight)`` pairs exactly like AUTOMATIC1111.

    >>> parse_prompt_attention("an (important) word")
    [('an ', 1.0), ('important', 1.1), (' word', 1.0)]
    >>> parse_prompt_attention("a BREAK b")
    [('a', 1.0), ('BREAK', -1.0), ('b', 1.0)]

    Raises :class:`PromptSyntaxError` for an explicit weight that ``float``
    rejects, such as ``(a:1.2.3)``.
    """
    texts: list[str] = []
    weights: list[float] = []
    open_round: list[int] = []  # index of the first run inside each open "("
    open_square: list[int] = []  # same for "["

    def scale_from(start: int, factor: float) -> None:
        for index in range(start, len(weights)):
            weights[index] *= factor

    def add(run: str, weight: float) -> None:
        texts.append(run)
        weights.append(weight)

    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup
        token = match.group()
        if kind in ("open_round", "open_square") and (
            len(open_round) + len(open_square) >= MAX_NESTING
        ):
            raise PromptSyntaxError(
                f"brackets are nested more than {MAX_NESTING} deep (at character {match.start()})"
            )
        if kind == "escape":
            add(token[1:], 1.0)
        elif kind == "open_round":
            open_round.append(len(texts))
        elif kind == "open_square":
            open_square.append(len(texts))
        elif kind == "weight" and open_round:
            start = open_round.pop()
            scale_from(start, _parse_weight(match.group("weight")))
        elif kind == "close_round" and open_round:
            scale_from(open_round.pop(), ROUND_BRACKET_MULTIPLIER)
        elif kind == "close_square" and open_square:
            scale_from(open_square.pop(), SQUARE_BRACKET_MULTIPLIER)
        else:
            # Plain text, ":" and unmatched closers are all literal text.
            for index, part in enumerate(_split_on_break(token)):
                if index > 0:
                    add(BREAK_TEXT, BREAK_WEIGHT)
                add(part, 1.0)

    # Unclosed brackets close at the end, round ones first, outermost first.
    for start in open_round:
        scale_from(start, ROUND_BRACKET_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_BRACKET_MULTIPLIER)

    if not texts:
        return [("", 1.0)]

    # Merge neighbours with exactly equal weights; a run keeps the weight of
    # its first member (this only matters for 0.0 == -0.0). Parts are joined once
    # per merged run: repeated concatenation would be quadratic.
    merged: list[WeightedText] = []
    parts: list[str] = []
    for run, weight in zip(texts, weights, strict=True):
        if parts and merged[-1][1] == weight:
            parts.append(run)
            continue
        if parts:
            merged[-1] = ("".join(parts), merged[-1][1])
        merged.append((run, weight))
        parts = [run]
    merged[-1] = ("".join(parts), merged[-1][1])
    return merged


def is_break(run: str, weight: float) -> bool:
    r"""True for a chunk-break marker, with A1111's own test.

    Only a ``BREAK`` outside any bracket is a break; inside brackets its
    weight has been multiplied and the web UI encodes it as the word "BREAK".
    """
    return run == BREAK_TEXT and weight == BREAK_WEIGHT


def strip_attention(text: str) -> str:
    r"""The prompt as plain text, for display: brackets and weights removed.

    Escapes are resolved (``\(`` -> ``(``) and every ``BREAK`` (inside
    brackets or not) is kept as the word ``BREAK`` with exactly one space on
    each side that has text, since the parser consumed the whitespace around
    it; elsewhere the text is kept verbatim.  A text without ``( ) [ ] \``
    and without ``BREAK`` comes back unchanged.

    >>> strip_attention("1girl, (solo:1.2), [blurry] BREAK \\(fate\\)")
    '1girl, solo, blurry BREAK (fate)'
    """
    segments: list[str] = [""]
    for run, _weight in parse_prompt_attention(text):
        if run == BREAK_TEXT:
            segments.append("")
        else:
            segments[-1] += run
    last = len(segments) - 1
    words: list[str] = []
    for index, segment in enumerate(segments):
        if index > 0:
            words.append(BREAK_TEXT)
            segment = segment.lstrip()
        if index < last:
            segment = segment.rstrip()
        if segment:
            words.append(segment)
    return " ".join(words)


def escape_attention(text: str) -> str:
    r"""Backslash-escape ``\ ( ) [ ]`` so that ``text`` is read literally.

    Useful for Danbooru tags with parentheses, e.g. ``yae miko (genshin
    impact)``, which would otherwise be weighted 1.1.  The web UI has no
    escape for ``BREAK``: it is left as it is and still splits the prompt.
    """
    return _ESCAPABLE_RE.sub(lambda match: "\\" + match.group(), text)
