"""Prompt editing and alternation: the schedules A1111 documents, computed without lark.

The expected schedules are copied from the web UI's own documentation: the doctests of
``get_learned_conditioning_prompt_schedules`` (``modules/prompt_parser.py``, web UI 1.6+)
and the worked example in that module's header comment and the wiki's "Prompt editing"
and "Alternating Words" sections. None of them was produced by this code.
"""

from __future__ import annotations

import pytest

from models.domain.prompt_schedule import (
    ScheduleBudget,
    ScheduleText,
    ScheduleTooLong,
    prompt_schedule,
    step_texts,
)
from models.domain.prompt_syntax import MAX_NESTING

WIKI_PROMPT = (
    "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
    "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]"
)

# (prompt, steps, hi-res steps, the schedule A1111 documents)
ORACLE: list[tuple[str, int, int | None, list[list[object]]]] = [
    ("test", 10, None, [[10, "test"]]),
    ("a [b:3]", 10, None, [[3, "a "], [10, "a b"]]),
    ("a [b: 3]", 10, None, [[3, "a "], [10, "a b"]]),
    ("a [[[b]]:2]", 10, None, [[2, "a "], [10, "a [[b]]"]]),
    ("[(a:2):3]", 10, None, [[3, ""], [10, "(a:2)"]]),
    ("a [b : c : 1] d", 10, None, [[1, "a b  d"], [10, "a  c  d"]]),
    ("a[b:[c:d:2]:1]e", 10, None, [[1, "abe"], [2, "ace"], [10, "ade"]]),
    ("a [unbalanced", 10, None, [[10, "a [unbalanced"]]),
    ("a [b:.5] c", 10, None, [[5, "a  c"], [10, "a b c"]]),
    ("((a][:b:c [d:3]", 10, None, [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
    ("[a|(b:1.1)]", 10, None, [[i, "a" if i % 2 else "(b:1.1)"] for i in range(1, 11)]),
    ("[fe|]male", 10, None, [[i, "female" if i % 2 else "male"] for i in range(1, 11)]),
    ("[fe|||]male", 10, None, [[i, "female" if i % 4 == 1 else "male"] for i in range(1, 11)]),
    # The hi-res pass (first pass 10 steps, hi-res 10): .5 is the first pass, 1.5 the second.
    ("a [b:.5] c", 10, 10, [[10, "a b c"]]),
    ("a [b:1.5] c", 10, 10, [[5, "a  c"], [10, "a b c"]]),
    # The module's header comment, 100 steps.
    (
        WIKI_PROMPT,
        100,
        None,
        [
            [25, "fantasy landscape with a mountain and an oak in foreground shoddy"],
            [50, "fantasy landscape with a lake and an oak in foreground in background shoddy"],
            [60, "fantasy landscape with a lake and an oak in foreground in background masterful"],
            [75, "fantasy landscape with a lake and an oak in background masterful"],
            [100, "fantasy landscape with a lake and a christmas tree in background masterful"],
        ],
    ),
    # The wiki: "a [fantasy:cyberpunk:16] landscape" switches after step 16.
    (
        "a [fantasy:cyberpunk:16] landscape",
        30,
        None,
        [[16, "a fantasy landscape"], [30, "a cyberpunk landscape"]],
    ),
]


@pytest.mark.parametrize(("prompt", "steps", "hires", "expected"), ORACLE)
def test_schedules_are_the_ones_a1111_documents(
    prompt: str, steps: int, hires: int | None, expected: list[list[object]]
) -> None:
    schedule = prompt_schedule(prompt, steps, hires)
    assert [[entry.end_step, entry.text] for entry in schedule] == expected


def test_the_wiki_alternation_switches_every_step() -> None:
    # "[cow|horse] in a field": step 1 cow, step 2 horse, step 3 cow, and so on.
    texts = [e.text for e in prompt_schedule("[cow|horse] in a field", 6)]
    assert texts == ["cow in a field", "horse in a field"] * 3


def test_a_step_uses_the_first_entry_that_ends_at_or_after_it() -> None:
    # reconstruct_cond_batch: sampler step i (0-based) takes the first entry with
    # i <= end_step, so [b:3] leaves b out of steps 0, 1, 2 and 3.
    texts = step_texts(prompt_schedule("a [b:3]", 10), 10)
    assert texts == ["a "] * 4 + ["a b"] * 6
    alternating = step_texts(prompt_schedule("[x|y]", 4), 4)
    assert alternating == ["x", "x", "y", "x"]


@pytest.mark.parametrize(
    "prompt",
    [
        "a | b",  # "|" outside brackets: the grammar reads nothing
        "a [b|c",  # an unfinished alternation
        "trailing \\",  # a backslash that escapes nothing
        "[a:b:c:3]",  # a text with ":" is not a step
        "[a:b]",  # no step
        "1girl, (smile:1.2), [blurry]",  # attention only
        "[" * (MAX_NESTING + 1) + "a:3" + "]" * (MAX_NESTING + 1),  # deeper than the cap
    ],
)
def test_what_schedules_nothing_is_one_literal_text(prompt: str) -> None:
    assert prompt_schedule(prompt, 20) == [ScheduleText(20, prompt)]


def test_a_number_as_a_value_is_not_a_step() -> None:
    # [a:3:5] is "a" until step 5, then "3": a weight can be edited too.
    assert [e.text for e in prompt_schedule("(x:[1.2:1.5:5])", 10)] == ["(x:1.2)", "(x:1.5)"]
    # A step under 1 never switches; one past the steps never does either.
    assert prompt_schedule("[a:b:0]", 10) == [ScheduleText(10, "b")]
    assert prompt_schedule("[a:b:50]", 10) == [ScheduleText(10, "a")]
    assert prompt_schedule("[a:b:1e999]", 10) == [ScheduleText(10, "a")]  # no overflow
    assert prompt_schedule("[a:b:-1e999]", 10) == [ScheduleText(10, "b")]


def test_escaped_brackets_and_break_pass_through() -> None:
    schedule = prompt_schedule(r"yae miko \(genshin\) [red BREAK blue:green:2]", 4)
    assert [e.text for e in schedule] == [
        r"yae miko \(genshin\) red BREAK blue",
        r"yae miko \(genshin\) green",
    ]


def test_the_budget_caps_the_work_a_request_can_ask_for() -> None:
    alternations = "[a|b], " * 500  # 500 alternations: every step is a boundary
    budget = ScheduleBudget(len(alternations) * 100)
    prompt_schedule(alternations, 100, budget=budget)  # exactly the budget
    with pytest.raises(ScheduleTooLong):
        prompt_schedule(alternations, 1, budget=budget)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "text",
    ["[" * 20_000, "[a" * 20_000, "(a:" * 20_000, "[a:b:" * 20_000, "[a|" * 20_000 + "]"],
)
def test_parsing_is_linear(text: str) -> None:
    """Each would take minutes if a failed construct were re-parsed from every bracket."""
    prompt_schedule(text, 28)
