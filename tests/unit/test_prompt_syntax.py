"""Tests for the AUTOMATIC1111-compatible attention parser.

Every expected value below was derived by hand from A1111's algorithm
(``modules/prompt_parser.py::parse_prompt_attention``): tokens are read left
to right, ``(`` / ``[`` remember where their run starts, a closer multiplies
every run from there to the end, leftovers are closed at the end (round
first), then neighbours with exactly equal weights are merged.
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

from models.domain.prompt_syntax import (
    BREAK_WEIGHT,
    SQUARE_BRACKET_MULTIPLIER,
    PromptSyntaxError,
    WeightedText,
    escape_attention,
    is_break,
    parse_prompt_attention,
    strip_attention,
)

R = 1.1  # "(x)"
S = 1 / 1.1  # "[x]"
BRK: WeightedText = ("BREAK", -1.0)

ANIMAGINE_NEGATIVE = (
    "nsfw, lowres, (bad), text, error, fewer, extra, missing, worst quality, jpeg artifacts, "
    "low quality, watermark, unfinished, displeasing, oldest, early, chromatic aberration, "
    "signature, extra digits, artistic error, username, scan, [abstract]"
)

CASES: list[tuple[str, list[WeightedText]]] = [
    # --- A1111's own docstring examples ---
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", R), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", R)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", R)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.3 * R * R),
            (" ", R),
            ("on", 1.0),  # (1 / 1.1) * 1.1 == 1.0 exactly, but " " and " a " are 1.1
            (" a ", R),
            ("hill", 0.5 * R),
            (", sun, ", R),
            ("sky", R * R * R * R),
            (".", R),
        ],
    ),
    # --- empty input and empty brackets ---
    ("", [("", 1.0)]),
    ("()", [("", 1.0)]),
    ("[]", [("", 1.0)]),
    ("(:1.5)", [("", 1.0)]),
    ("a () b", [("a  b", 1.0)]),
    ("( )", [(" ", R)]),
    # --- nesting ---
    ("((a))", [("a", R * R)]),
    ("(((sky)))", [("sky", R * R * R)]),
    ("[a]", [("a", S)]),
    ("[[a]]", [("a", S * S)]),
    ("((a:1.2))", [("a", 1.2 * R)]),
    ("(a (b:2))", [("a ", R), ("b", 2.0 * R)]),
    ("x ([a]) y", [("x a y", 1.0)]),  # the brackets cancel exactly, so the runs merge
    ("(a[b)c]", [("a", R), ("b", 1.0), ("c", S)]),  # crossing brackets
    ("[a(b]c)", [("a", S), ("b", 1.0), ("c", R)]),
    # --- explicit weights ---
    ("(tag:1.5)", [("tag", 1.5)]),
    ("(tag:0)", [("tag", 0.0)]),
    ("(tag:00)", [("tag", 0.0)]),
    ("(a:b:1.2)", [("a:b", 1.2)]),
    ("(x:-1)", [("x", -1.0)]),
    ("(x:-1.5) y", [("x", -1.5), (" y", 1.0)]),
    ("(x:+2)", [("x", 2.0)]),
    ("(x:.5)", [("x", 0.5)]),
    ("a (x:1.) b", [("a x b", 1.0)]),  # an explicit 1.0 merges with its neighbours
    ("(a:1.5)(b:1.5)", [("ab", 1.5)]),
    ("(a:1.1)(b)", [("ab", R)]),
    ("(a:2)(b:2.0)", [("ab", 2.0)]),
    ("(tag: 1.5 )", [("tag", 1.5)]),  # spaces around the number are allowed
    ("(tag:\t1.5\n)", [("tag", 1.5)]),
    ("(tag :1.5)", [("tag ", 1.5)]),  # ...but the space before ":" is text
    ("(tag:1.5 x)", [("tag:1.5 x", R)]),  # not "number then )": plain text
    ("(tag:abc)", [("tag:abc", R)]),  # colon without a number
    ("(a: )", [("a: ", R)]),
    ("(x:1e3)", [("x:1e3", R)]),  # no exponents
    ("[a:1.5]", [("a:1.5", S)]),  # square brackets take no weight
    ("tag:1.5", [("tag:1.5", 1.0)]),
    ("tag:1.5)", [("tag:1.5)", 1.0)]),  # weight with nothing to close is text
    # --- unbalanced brackets ---
    ("(((a", [("a", R * R * R)]),
    ("a)))", [("a)))", 1.0)]),
    ("[a", [("a", S)]),
    ("a]", [("a]", 1.0)]),
    ("(a]", [("a]", R)]),
    ("[a)", [("a)", S)]),
    ("(a:1.5", [("a:1.5", R)]),
    ("(a:1.5]", [("a:1.5]", R)]),
    ("([a", [("a", R * S)]),  # round closes first at the end
    # --- escapes ---
    (r"\(\)\[\]\\", [("()[]\\", 1.0)]),
    (r"\((x)\)", [("(", 1.0), ("x", R), (")", 1.0)]),
    (r"(a\)b)", [("a)b", R)]),
    (r"a\\(b)", [("a\\", 1.0), ("b", R)]),
    (r"\\\(", [("\\(", 1.0)]),
    (r"a\b", [("ab", 1.0)]),  # a lone backslash is dropped
    (r"a\:b", [("a:b", 1.0)]),
    ("abc\\", [("abc", 1.0)]),
    (r"yae miko \(genshin impact\)", [("yae miko (genshin impact)", 1.0)]),
    ("yae miko (genshin impact)", [("yae miko ", 1.0), ("genshin impact", R)]),
    # --- BREAK ---
    ("a BREAK b", [("a", 1.0), BRK, ("b", 1.0)]),
    ("BREAK a", [("", 1.0), BRK, ("a", 1.0)]),
    ("a BREAK", [("a", 1.0), BRK, ("", 1.0)]),
    ("BREAK", [("", 1.0), BRK, ("", 1.0)]),
    ("a BREAK BREAK b", [("a", 1.0), BRK, ("", 1.0), BRK, ("b", 1.0)]),
    ("a,BREAK,b", [("a,", 1.0), BRK, (",b", 1.0)]),
    ("a\nBREAK\n\nb", [("a", 1.0), BRK, ("b", 1.0)]),
    ("a\u3000BREAK\u3000b", [("a", 1.0), BRK, ("b", 1.0)]),
    ("aBREAKb", [("aBREAKb", 1.0)]),
    ("BREAKfast, a_BREAK", [("BREAKfast, a_BREAK", 1.0)]),
    ("a break b", [("a break b", 1.0)]),
    (
        "a (b) BREAK (c)",
        [("a ", 1.0), ("b", R), ("", 1.0), BRK, ("", 1.0), ("c", R)],
    ),
    ("(a BREAK b)", [("a", R), ("BREAK", -R), ("b", R)]),  # no longer a break
    ("(a BREAK b:0)", [("aBREAKb", 0.0)]),  # 0.0 == -0.0, so everything merges
    ("(BREAK:-1)", [("", -1.0), ("BREAK", 1.0), ("", -1.0)]),
    (r"\(BREAK\)", [("(", 1.0), BRK, (")", 1.0)]),
    # --- unicode ---
    ("1girl, (猫耳:1.2), 日本語", [("1girl, ", 1.0), ("猫耳", 1.2), (", 日本語", 1.0)]),
    ("(🎉) party", [("🎉", R), (" party", 1.0)]),
    ("日本 BREAK 語", [("日本", 1.0), BRK, ("語", 1.0)]),
    ("日本BREAK語", [("日本BREAK語", 1.0)]),  # CJK letters are word characters
    ("🎉BREAK🎉", [("🎉", 1.0), BRK, ("🎉", 1.0)]),  # emoji are not
    ("（tag：1.2）", [("（tag：1.2）", 1.0)]),  # full-width punctuation is text
    ("(tag:１.５)", [("tag", 1.5)]),  # ...but full-width digits are a number
    # --- multi-line and real prompts ---
    ("a\n(b)\n", [("a\n", 1.0), ("b", R), ("\n", 1.0)]),
    (
        ANIMAGINE_NEGATIVE,
        [
            ("nsfw, lowres, ", 1.0),
            ("bad", R),
            (
                ", text, error, fewer, extra, missing, worst quality, jpeg artifacts, "
                "low quality, watermark, unfinished, displeasing, oldest, early, "
                "chromatic aberration, signature, extra digits, artistic error, "
                "username, scan, ",
                1.0,
            ),
            ("abstract", S),
        ],
    ),
    (
        "1girl, souryuu asuka langley, (masterpiece:1.2), best quality, [[blurry]], BREAK solo",
        [
            ("1girl, souryuu asuka langley, ", 1.0),
            ("masterpiece", 1.2),
            (", best quality, ", 1.0),
            ("blurry", S * S),
            (",", 1.0),
            BRK,
            ("solo", 1.0),
        ],
    ),
]


def assert_parsed(actual: list[WeightedText], expected: list[WeightedText]) -> None:
    assert [text for text, _ in actual] == [text for text, _ in expected]
    assert [weight for _, weight in actual] == pytest.approx([weight for _, weight in expected])
    assert all(isinstance(item, tuple) and isinstance(item[1], float) for item in actual)


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({prompt for prompt, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("prompt", "expected"), CASES, ids=[repr(p)[:40] for p, _ in CASES])
def test_parse_table(prompt: str, expected: list[WeightedText]) -> None:
    assert_parsed(parse_prompt_attention(prompt), expected)


def test_docstring_weights_are_bit_exact() -> None:
    # A1111's docstring prints these exact reprs; the product order matters.
    parsed = dict(parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."))
    assert parsed["house"] == 1.5730000000000004
    assert parsed["sky"] == 1.4641000000000006
    assert parsed["hill"] == 0.55
    assert parsed["on"] == 1.0


def test_break_weight_is_exactly_minus_one() -> None:
    parsed = parse_prompt_attention("a BREAK b")
    assert parsed[1] == ("BREAK", BREAK_WEIGHT)
    assert is_break(*parsed[1])
    assert not is_break(*parse_prompt_attention("(a BREAK b)")[1])
    assert not is_break("BREAK", 1.0)
    assert not is_break("a", -1.0)


@pytest.mark.parametrize(
    "prompt", ["(a:1.2.3)", "(a:.)", "(a:..5)", "x (a: 1.. ) y", "(a:+.)", r"(a\:1.2.3)"]
)
def test_malformed_weight_raises(prompt: str) -> None:
    with pytest.raises(PromptSyntaxError, match="invalid attention weight"):
        parse_prompt_attention(prompt)
    with pytest.raises(ValueError, match="invalid attention weight"):
        parse_prompt_attention(prompt)


@pytest.mark.parametrize("prompt", ["a:1.2.3)", "[a:1.2.3)", "(a:1.2.3]", r"\(a:1.2.3)"])
def test_malformed_weight_without_open_round_bracket_is_text(prompt: str) -> None:
    parse_prompt_attention(prompt)  # must not raise


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
