"""Tests for the AUTOMATIC1111-compatible attention parser.

Every expected value below was derived by hand from A1111's algorithm
(``modules/prompt_parser.py::parse_prompt_attention``): tokens are read left
to right, ``(`` / ``[`` remember where their run starts, a closer multiplies
every run from there to the end, leftovers are closed at the end (round
first), then neighbours with exactly equal weights are merged.
"""

from __future__ import annotations

import pytest

from models.domain.prompt_syntax import (
    BREAK_WEIGHT,
    PromptSyntaxError,
    WeightedText,
    is_break,
    parse_prompt_attention,
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
