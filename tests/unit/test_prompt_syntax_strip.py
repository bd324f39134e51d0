"""strip_attention and escape_attention: stripping keeps the text and drops only the
attention syntax (BREAK stays a word), and escaped text parses back as itself, weight 1."""

from __future__ import annotations

import pytest

from models.domain.prompt_syntax import escape_attention, parse_prompt_attention, strip_attention
from tests.unit.test_prompt_syntax import ANIMAGINE_NEGATIVE

STRIP_CASES: list[tuple[str, str]] = [
    ("", ""),
    ("normal text", "normal text"),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", "a house on a hill, sun, sky."),
    (r"\(literal\]", "(literal]"),
    (
        ANIMAGINE_NEGATIVE,
        ANIMAGINE_NEGATIVE.replace("(bad)", "bad").replace("[abstract]", "abstract"),
    ),
    ("a BREAK b", "a BREAK b"),
    ("a  BREAK\n\nb", "a BREAK b"),
    ("a,BREAK,b", "a, BREAK ,b"),
    ("BREAK a", "BREAK a"),
    ("a BREAK", "a BREAK"),
    ("BREAK", "BREAK"),
    ("a BREAK BREAK b", "a BREAK BREAK b"),
    ("(a BREAK b)", "a BREAK b"),
    ("(a )BREAK b", "a BREAK b"),
    ("  lead (x) trail  ", "  lead x trail  "),
    (r"a\b", "ab"),
    ("(a:b:1.2)", "a:b"),
    ("a)))", "a)))"),
    ("1girl, (猫耳:1.2) 🎉", "1girl, 猫耳 🎉"),
]


@pytest.mark.parametrize(("prompt", "expected"), STRIP_CASES)
def test_strip_attention(prompt: str, expected: str) -> None:
    assert strip_attention(prompt) == expected


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("yae miko (genshin impact)", r"yae miko \(genshin impact\)"),
        ("[a]\\b", r"\[a\]\\b"),
        ("plain: text", "plain: text"),
    ],
)
def test_escape_attention(text: str, escaped: str) -> None:
    assert escape_attention(text) == escaped
    assert parse_prompt_attention(escaped) == [(text, 1.0)]
