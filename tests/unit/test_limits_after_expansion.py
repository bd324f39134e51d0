"""Every limit holds for the text that is encoded: after tags, quality tags, styles,
wildcards and Prompt S/R, for every step of a prompt-editing schedule.

Pure: no services. ``check_limits`` is the one check every door runs
(models/service/submit.py); what it accepts must stay within every limit once the grid
is expanded, however the request was built, and whatever a tenant's content policy
adds to it (models/domain/policy.py).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.domain.grid import expand, resolve
from models.domain.limits import Limits, check_job
from models.domain.policy import ContentPolicy, rating_in, with_forced_terms
from models.domain.prompt_chunks import EstimatedTokens, count_chunks
from models.domain.prompt_pipeline import PromptLibrary
from models.domain.prompt_schedule import passes_of
from models.domain.prompt_syntax import parse_prompt_attention
from models.domain.spec import JobSpec, SpecError
from models.domain.styles import Style
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from models.service.submit import Submitter

LIBRARY = PromptLibrary(
    styles={
        "plain": Style("plain", "{prompt}", ""),
        "ink": Style("ink", "{prompt}, ink, monochrome", "color, red"),
        "wordy": Style("wordy", "x" * 200 + " {prompt}", "y" * 100),
    },
    wildcards={
        "colour": ("red", "blue", "(green:1.2)", "{pale|dark} pink"),
        "long": ("x" * 150,),
        "pose": ("sitting", "standing", "__colour__ dress"),
    },
)
LIMITS = Limits(
    default_model="m",
    models=frozenset({"m"}),
    max_prompt_chars=400,
    max_prompt_chunks=3,
    max_job_text_chars=20_000,
    max_grid_cells=2_000,
    library=LIBRARY,
)
SETTINGS = Settings(
    model="m",
    models={"m": "simulated:0"},
    max_prompt_chars=400,
    max_prompt_chunks=3,
    max_job_text_chars=20_000,
    max_grid_cells=2_000,
)


# -- property: nothing accepted exceeds a limit after expansion -------------------------

_WORDS = st.sampled_from(
    [
        *["1girl", "red", "hair", "smile", "BREAK", "(solo:1.2)", "[blurry]", "(a)", "x" * 40],
        *[",", "{red|blue}", "{2$$a|b|c}", "__colour__", "__long__", "__pose__"],
        *["[cat:dog:2]", "[smile|frown]", "[" + "y" * 60 + "::0.5]", "[a:(b:1.5.5):3]"],
    ]
)
_TEXT = st.lists(_WORDS, min_size=1, max_size=60).map(" ".join)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    prompts = draw(st.lists(_TEXT, min_size=1, max_size=4))
    body: dict[str, Any] = {
        "prompts": prompts,
        "negative_prompt": draw(_TEXT),
        "quality_tags": draw(st.booleans()),
        "seeds": draw(st.sampled_from([[1], [1, 2, 3], [-1, 5]])),
        "steps": draw(st.sampled_from([4, [3, 6]])),
        "sampler": draw(st.sampled_from(["euler_a", ["euler_a", "heun"]])),
    }
    if draw(st.booleans()):
        body["style"] = draw(st.sampled_from(["ink", ["plain", "wordy"], ["ink", "plain"]]))
    if draw(st.booleans()):
        body["hires"] = {"scale": 1.5, "steps": draw(st.sampled_from([None, 3]))}
    if draw(st.booleans()) and "__pose__" in " ".join(prompts):
        body["wildcard_axes"] = ["pose"]
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
        checked = check_job(spec, LIMITS)
    except SpecError:
        return  # refused: fine, as long as what is accepted holds
    counter = EstimatedTokens()
    encoded: set[str] = set()
    for cell in expand(checked.grid, LIBRARY):
        passes = passes_of(
            cell.sampler,
            cell.steps,
            hires=cell.hires_scale is not None,
            hires_steps=cell.hires_steps,
        )
        for text in (cell.prompt, cell.negative_prompt):
            assert len(text) <= LIMITS.max_prompt_chars
            steps = [entry.text for s in passes.schedules(text) for entry in s]
            encoded.update(steps)
            for step in steps:  # what the worker encodes
                assert len(step) <= LIMITS.max_prompt_chars
                assert count_chunks(step, counter) <= LIMITS.max_prompt_chunks
                parse_prompt_attention(step)  # and it parses
            # What the estimate priced: the longest step.
            assert checked.chunks[text] == max(count_chunks(t, counter) for t in steps)
    assert sum(map(len, encoded)) <= LIMITS.max_job_text_chars


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
