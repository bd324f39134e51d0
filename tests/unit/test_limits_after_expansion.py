"""Every limit holds for the text that is encoded: after tags, quality tags and Prompt S/R.

Pure: no services. ``check_limits`` is the one check every door runs
(models/service/submit.py); what it accepts must stay within every limit once the grid
is expanded, however the request was built, and whatever a tenant's content policy
adds to it (models/domain/policy.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.domain.grid import expand, resolve
from models.domain.limits import Limits, check_limits
from models.domain.policy import ContentPolicy, rating_in, with_forced_terms
from models.domain.prompt_chunks import EstimatedTokens, count_chunks
from models.domain.prompt_syntax import MAX_NESTING, PromptSyntaxError, parse_prompt_attention
from models.domain.spec import JobSpec, SpecError
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from models.service.submit import Submitter

LIMITS = Limits(
    default_model="m",
    models=frozenset({"m"}),
    max_prompt_chars=400,
    max_prompt_chunks=3,
    max_job_text_chars=20_000,
    max_grid_cells=2_000,
)
SETTINGS = Settings(
    model="m",
    models={"m": "simulated:0"},
    max_prompt_chars=400,
    max_prompt_chunks=3,
    max_job_text_chars=20_000,
    max_grid_cells=2_000,
)


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


# -- property: nothing accepted exceeds a limit after expansion -------------------------

_WORDS = st.sampled_from(
    ["1girl", "red", "hair", "smile", "BREAK", "(solo:1.2)", "[blurry]", "(a)", "x" * 40, ","]
)
_TEXT = st.lists(_WORDS, min_size=1, max_size=60).map(" ".join)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    prompts = draw(st.lists(_TEXT, min_size=1, max_size=4))
    body: dict[str, Any] = {
        "prompts": prompts,
        "negative_prompt": draw(_TEXT),
        "quality_tags": draw(st.booleans()),
        "seeds": [1],
    }
    if draw(st.booleans()):  # Prompt S/R: its first value must be in the text (A1111)
        search = draw(st.sampled_from(["red", "hair", "1girl"]))
        body["negative_prompt"] += f", {search}"
        values = draw(st.lists(_TEXT, min_size=1, max_size=3, unique=True))
        body["prompt_replace"] = [search, *[v for v in values if v != search]]
    return body


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(specs())
def test_nothing_accepted_exceeds_a_limit_after_expansion(body: dict[str, Any]) -> None:
    spec = JobSpec.model_validate(body)
    try:
        chunks = check_limits(spec, LIMITS)
    except SpecError:
        return  # refused: fine, as long as what is accepted holds
    counter = EstimatedTokens()
    for cell in expand(resolve(spec, default_model="m")):
        for text in (cell.prompt, cell.negative_prompt):
            assert len(text) <= LIMITS.max_prompt_chars
            assert count_chunks(text, counter) <= LIMITS.max_prompt_chunks
            assert chunks[text] == count_chunks(text, counter)  # what the estimate priced
            parse_prompt_attention(text)  # and it parses


# -- property: a tenant's policy adds text, and every limit still holds -----------------

_RATING = st.sampled_from(["safe", "sensitive", "nsfw", "explicit"])


@st.composite
def policies(draw: st.DrawFn) -> ContentPolicy:
    forced = draw(st.none() | _RATING)
    allowed = draw(st.none() | st.sets(_RATING, min_size=1))
    if forced is not None and allowed is not None:
        allowed = allowed | {forced}
    return ContentPolicy(
        allowed_ratings=None if allowed is None else frozenset(allowed),
        forced_rating=forced,
        forced_negative=draw(st.none() | _TEXT),
    )


_TAGGED = st.lists(
    st.sampled_from(["1girl", "smile", "nsfw", "(safe:1.1)", "[explicit]"]), max_size=4
)


@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(specs(), policies(), _TAGGED)
def test_nothing_accepted_under_a_policy_exceeds_a_limit(
    body: dict[str, Any], policy: ContentPolicy, tags: list[str]
) -> None:
    """The one submit path's step 1 (``Submitter.check``) with a tenant's policy: what it
    accepts, with the forced rating tag and negative terms added, is within every limit
    and carries only ratings the policy allows."""
    body = {**body, "prompts": [", ".join([p, *tags]) for p in body["prompts"]], "model": "m"}
    spec = JobSpec.model_validate(body)
    submitter = Submitter(SETTINGS, LocalPublisher())
    try:
        submitter.check(spec, policy=policy)
    except SpecError:
        return
    counter = EstimatedTokens()
    for cell in expand(resolve(with_forced_terms(spec, policy), default_model="m")):
        for text in (cell.prompt, cell.negative_prompt):
            assert len(text) <= LIMITS.max_prompt_chars
            assert count_chunks(text, counter) <= LIMITS.max_prompt_chunks
            parse_prompt_attention(text)
        rating = rating_in(cell.prompt)
        if policy.forced_rating is not None:
            assert rating is not None  # the forced tag is there (or a stronger, allowed one)
        assert policy.allowed_ratings is None or rating is None or rating in policy.allowed_ratings
        if policy.forced_negative:
            assert cell.negative_prompt.endswith(policy.forced_negative)
