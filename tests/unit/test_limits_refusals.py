"""The limits, by example: quality tags, Prompt S/R, styles, wildcards and prompt editing
are counted before a job is accepted, text processing stays linear, and every refusal
names the field and the cause.

Pure: no services.
"""

from __future__ import annotations

from typing import Any

import pytest

from models.domain.grid import expand
from models.domain.limits import Limits, check_job, check_limits
from models.domain.prompt_chunks import EstimatedTokens, count_chunks
from models.domain.prompt_syntax import MAX_NESTING, PromptSyntaxError, parse_prompt_attention
from models.domain.spec import JobSpec, SpecError
from tests.unit.test_limits_after_expansion import LIBRARY, LIMITS


def fields_of(body: dict[str, Any], limits: Limits = LIMITS) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        check_limits(JobSpec.model_validate({"seeds": [1], **body}), limits)
    return {e.field: e.reason for e in caught.value.errors}


def test_quality_tags_count_toward_the_length() -> None:
    body = {"prompts": ["a" * 390]}  # 390 as sent; 445 once the card's tags are in front
    assert "prompts.0" in fields_of(body)
    check_limits(JobSpec.model_validate({**body, "quality_tags": False, "seeds": [1]}), LIMITS)


def test_prompt_replace_is_checked_before_any_variant_is_built() -> None:
    # 40 "x" of 10 characters each, replaced by 300 characters: 12,000+ characters.
    body = {"prompts": ["x, " * 40], "quality_tags": False, "prompt_replace": ["x", "y" * 300]}
    reason = fields_of(body)["prompts.0"]
    assert "Prompt S/R value 1" in reason and "limit is 400" in reason


def test_the_negative_prompt_is_checked_after_replacement_too() -> None:
    body = {
        "prompts": ["1girl, red"],
        "negative_prompt": "red, " * 10,
        "prompt_replace": ["red", "r" * 100],
    }
    assert "negative_prompt" in fields_of(body)


def test_the_distinct_text_of_a_job_is_capped() -> None:
    values = ["red", *[f"colour {i:03d} " * 3 for i in range(99)]]
    body = {"prompts": [f"red {i}" for i in range(10)], "prompt_replace": values}
    tight = Limits(**{**LIMITS.__dict__, "max_job_text_chars": 5_000})
    assert "distinct prompt text" in fields_of(body, tight)["prompts"]


def test_syntax_errors_name_the_prompt_at_submit() -> None:
    fields = fields_of({"prompts": ["1girl", "(smile:1.2.3)"], "negative_prompt": "(a:.)"})
    assert "invalid attention weight" in fields["prompts.1"]
    assert "negative_prompt" in fields and "prompts.0" not in fields


def test_a_replacement_that_breaks_the_syntax_is_caught() -> None:
    body = {
        "prompts": ["(smile:W)"],
        "quality_tags": False,
        "prompt_replace": ["W", "1.2", "1.2.3"],
    }
    assert "Prompt S/R value 2" in fields_of(body)["prompts.0"]


def test_chunks_are_capped_and_break_counts() -> None:
    reason = fields_of({"prompts": ["a BREAK b BREAK c BREAK d"]})["prompts.0"]
    assert reason == "4 chunks of 75 tokens; the limit is 3"
    accepted = check_limits(
        JobSpec.model_validate({"prompts": ["a BREAK b"], "quality_tags": False, "seeds": [1]}),
        LIMITS,
    )
    assert accepted["a BREAK b"] == 2


def test_nesting_is_capped_so_parsing_stays_linear() -> None:
    deep = "(" * (MAX_NESTING + 1) + "a"
    with pytest.raises(PromptSyntaxError, match="nested more than"):
        parse_prompt_attention(deep)
    assert "nested more than" in fields_of({"prompts": [deep]})["prompts.0"]
    assert parse_prompt_attention("(" * MAX_NESTING + "a")[0][0] == "a"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "text",
    [
        "a" + " " * 200_000 + "b",  # the old BREAK split backtracked on every space
        ":" + " " * 200_000 + "x",
        "a\\(" * 50_000,  # 50,000 runs that merge into one: no repeated concatenation
        "a, " * 60_000,
        "( : " * 30,
    ],
)
def test_text_processing_is_linear(text: str) -> None:
    """Each of these took minutes or more when a step was quadratic; linear, they take
    milliseconds. The timeout is four orders of magnitude above the linear time."""
    parse_prompt_attention(text)
    count_chunks(text[:100_000], EstimatedTokens())


# -- styles, wildcards and prompt editing: each refusal names the field and the cause ---


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"prompts": ["a" * 250], "style": "wordy"}, "prompts.0", "with style 'wordy'"),
        ({"prompts": ["1girl"], "style": ["ink", "oil"]}, "style.1", "unknown style 'oil'"),
        ({"prompts": ["1girl, __hat__"]}, "prompts.0", "unknown wildcard __hat__"),
        ({"prompts": ["1girl"], "negative_prompt": "__x*__"}, "negative_prompt", "__x*__"),
        ({"prompts": ["1girl, {red|blue"]}, "prompts.0", "never closed"),
        ({"prompts": ["1girl"], "wildcard_axes": ["hat"]}, "wildcard_axes.0", "unknown"),
        ({"prompts": ["1girl"], "wildcard_axes": ["pose"]}, "wildcard_axes.0", "in no prompt"),
        ({"prompts": ["__long__, __long__, __long__"]}, "prompts.0", "wildcards are resolved"),
        ({"prompts": ["(a:[1.2.3:1.2:2])"]}, "prompts.0", "in its text up to step 2:"),
        ({"prompts": ["1girl"], "prompt_replace": ["ink", "oil"]}, "prompt_replace", "neither"),
    ],
)
def test_refusals_name_the_field(body: dict[str, Any], field: str, reason: str) -> None:
    fields = fields_of({"quality_tags": False, **body})
    assert field in fields, fields
    assert reason in fields[field], fields[field]


def test_each_step_of_a_schedule_is_held_to_the_chunk_limit() -> None:
    long = ", ".join(["long hair", "blue eyes", "smile"] * 30)  # 4+ chunks on its own
    roomy = Limits(**{**LIMITS.__dict__, "max_prompt_chars": 4_000})
    body = {"prompts": [f"[{long}:solo:2]"], "quality_tags": False}
    reason = fields_of(body, roomy)["prompts.0"]
    assert "chunks of 75 tokens" in reason and "in its text up to step 2:" in reason
    # Only in the first pass's first steps, and never in the hi-res pass: still refused.
    body = {"prompts": [f"[{long}::0.1]"], "quality_tags": False, "hires": {"scale": 1.5}}
    assert "prompts.0" in fields_of(body, roomy)


def test_what_styles_and_wildcards_make_is_what_is_checked() -> None:
    # The Prompt S/R term is only in the style's text, and in a wildcard's values.
    ok = {"prompts": ["1girl"], "style": "ink", "prompt_replace": ["monochrome", "sepia"]}
    check_limits(JobSpec.model_validate({**ok, "seeds": [1]}), LIMITS)
    checked = check_job(
        JobSpec.model_validate({"prompts": ["1girl, __pose__"], "seeds": [1, 2, 3]}), LIMITS
    )
    prompts = {c.prompt for c in expand(checked.grid, LIBRARY)}
    assert prompts and all("__" not in p for p in prompts)
    assert set(checked.chunks) >= prompts


def test_the_schedule_work_a_job_may_ask_for_is_capped() -> None:
    tight = Limits(**{**LIMITS.__dict__, "max_job_text_chars": 4_000, "max_prompt_chars": 4_000})
    alternations = ", ".join(f"[a|b{'|c' * (i % 5)}]" for i in range(300))  # ~3,000 chars
    body = {"prompts": [alternations], "quality_tags": False, "steps": 100}
    assert "too many texts to schedule" in fields_of(body, tight)["prompts.0"]


def test_combinatorial_wildcards_are_counted_as_axes() -> None:
    spec = JobSpec.model_validate(
        {"prompts": ["1girl, __pose__"], "seeds": [1, 2], "wildcard_axes": ["pose"]}
    )
    assert spec.axis_sizes(LIBRARY)["__pose__"] == 3
    assert spec.cell_count(LIBRARY) == 6
    with pytest.raises(ValueError, match="prompt library"):
        spec.cell_count()
    tight = Limits(**{**LIMITS.__dict__, "max_grid_cells": 5})
    assert "6 cells" in fields_of({**spec.model_dump(exclude_none=True)}, tight)["prompts"]
