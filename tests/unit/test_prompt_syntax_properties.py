"""Properties of the attention parser on seeded random prompts: text without syntax is one
run, BREAK only loses its surrounding whitespace, escaped text is literal, brackets never add
characters, equal neighbours are merged, and wrapping in ``[...]`` scales every run."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from models.domain.prompt_syntax import (
    SQUARE_BRACKET_MULTIPLIER,
    escape_attention,
    is_break,
    parse_prompt_attention,
    strip_attention,
)

# --- property tests (seeded stdlib random, no extra dependency) ---

_ALPHABET = "ab1 :,.-日🎉\n\t"
_SYNTAX_ATOMS = ["(", ")", "[", "]", "\\", ":", ":1.5)", ": 2 )", ":-1)", ":0)", "BREAK", " BREAK "]


def _random_texts(alphabet: str, atoms: list[str], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pool = list(alphabet) + atoms
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 20))) for _ in range(count)]


def test_property_text_without_syntax_is_one_run() -> None:
    for text in _random_texts(_ALPHABET, ["BREAKx", "xBREAK", "break"], 500, seed=1):
        assert parse_prompt_attention(text) == [(text, 1.0)]
        assert strip_attention(text) == text


def test_property_concatenation_equals_input_minus_break_whitespace() -> None:
    for text in _random_texts(_ALPHABET, ["BREAK", " BREAK ", "\nBREAK"], 500, seed=2):
        parsed = parse_prompt_attention(text)
        expected = re.sub(r"\s*\bBREAK\b\s*", "BREAK", text)
        assert "".join(run for run, _ in parsed) == expected
        assert all(weight in (1.0, -1.0) for _, weight in parsed)


def test_property_escaped_text_is_literal() -> None:
    atoms = ["(", ")", "[", "]", "\\", ":1.5)", "BREAKx"]
    for text in _random_texts(_ALPHABET, atoms, 500, seed=3):
        assert parse_prompt_attention(escape_attention(text)) == [(text, 1.0)]


def test_property_invariants_on_arbitrary_syntax() -> None:
    for text in _random_texts("ab日 ", _SYNTAX_ATOMS, 2000, seed=4):
        parsed = parse_prompt_attention(text)
        assert parsed, text
        for (_, left), (_, right) in itertools.pairwise(parsed):
            assert left != right, text  # runs with equal weights are merged
        # Brackets and weights never add characters: the runs are a
        # subsequence of the input's characters (escapes, BREAK aside).
        joined = "".join(run for run, weight in parsed if not is_break(run, weight))
        source = iter(text)
        assert all(char in source for char in joined), text


def test_property_wrapping_scales_every_run() -> None:
    for text in _random_texts("ab日 ", ["(", ")", ":1.5)"], 500, seed=5):
        inner = parse_prompt_attention(text)
        if inner == [("", 1.0)]:
            continue  # "[]" around nothing is still the special empty result
        wrapped_square = parse_prompt_attention(f"[{text}]")
        assert [run for run, _ in wrapped_square] == [run for run, _ in inner], text
        assert [w for _, w in wrapped_square] == pytest.approx(
            [w * SQUARE_BRACKET_MULTIPLIER for _, w in inner]
        )
