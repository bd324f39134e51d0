"""Animagine tag fields and quality presets compose the prompt the model was trained on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from api.errors import validation_fields
from models.domain.animagine import QUALITY_TAGS, rating_of
from models.domain.grid import expand, resolve
from models.domain.prompt_syntax import parse_prompt_attention
from models.domain.spec import JobSpec
from models.domain.tags import PromptTags, compose, literal_name
from tests.conftest import ApiClient

ASUKA: dict[str, Any] = {
    "subject": "1girl",
    "character": "souryuu asuka langley",
    "series": "neon genesis evangelion",
    "tags": ["solo", "upper body", "(smile:1.2)"],
    "quality": "masterpiece",
    "rating": "safe",
    "year": "newest",
    "aesthetic": "very aesthetic",
}


def test_fields_compose_in_training_order_then_modifiers() -> None:
    tags = PromptTags.model_validate(ASUKA)
    assert compose(tags, quality_tags=False) == (
        "1girl, souryuu asuka langley, neon genesis evangelion, solo, upper body, "
        "(smile:1.2), masterpiece, safe, newest, very aesthetic"
    )


def test_the_standard_preset_is_prepended_and_not_repeated() -> None:
    tags = PromptTags.model_validate(ASUKA)
    composed = compose(tags, quality_tags=True)
    assert composed == (
        f"{QUALITY_TAGS}, 1girl, souryuu asuka langley, neon genesis evangelion, solo, "
        "upper body, (smile:1.2), safe, newest"
    )
    assert compose(tags, quality_tags="standard") == composed


@pytest.mark.parametrize(
    ("quality_tags", "position", "expected"),
    [
        (True, "prepend", f"{QUALITY_TAGS}, 1girl, solo"),
        ("standard", "append", f"1girl, solo, {QUALITY_TAGS}"),
        ("light", "prepend", "best quality, 1girl, solo"),
        ("light", "append", "1girl, solo, best quality"),
        ("none", "prepend", "1girl, solo"),
        (False, "append", "1girl, solo"),
    ],
)
def test_quality_presets_and_position(
    quality_tags: bool | str, position: Any, expected: str
) -> None:
    assert compose(" 1girl, solo ", quality_tags=quality_tags, position=position) == expected


def test_explicit_rating_is_the_cards_two_tags() -> None:
    composed = compose(PromptTags(subject="1girl", rating="explicit"), quality_tags=False)
    assert composed == "1girl, explicit, nsfw"
    assert rating_of(composed) == "explicit"
    assert rating_of(compose(PromptTags(subject="1boy", rating="sensitive"))) == "sensitive"


def test_names_are_literal_text() -> None:
    assert literal_name("yae miko (genshin impact)") == r"yae miko \(genshin impact\)"
    assert literal_name(r"yae miko \(genshin impact\)") == r"yae miko \(genshin impact\)"
    composed = compose(PromptTags(character="yae miko (genshin impact)"), quality_tags=False)
    assert parse_prompt_attention(composed) == [("yae miko (genshin impact)", 1.0)]
    # Tags keep their syntax: weights are what they are for.
    assert compose(PromptTags(tags="(solo:1.3)"), quality_tags=False) == "(solo:1.3)"


def test_modifier_spellings_are_normalised() -> None:
    tags = PromptTags.model_validate({"aesthetic": "Very_Aesthetic", "quality": "BEST QUALITY"})
    assert (tags.aesthetic, tags.quality) == ("very aesthetic", "best quality")


def test_a_grid_stores_the_composed_prompt() -> None:
    spec = JobSpec.model_validate(
        {"prompts": ["1boy, solo", ASUKA], "quality_tags": "light", "seeds": [1]}
    )
    cells = expand(resolve(spec, default_model="m"))
    assert [c.prompt for c in cells] == [
        "best quality, 1boy, solo",
        "best quality, 1girl, souryuu asuka langley, neon genesis evangelion, solo, "
        "upper body, (smile:1.2), masterpiece, safe, newest, very aesthetic",
    ]
    # The spec keeps the object as the client sent it (normalised), for replays.
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"prompts": ["a", {"subject": "1girl", "rating": "r18"}]}, "prompts.1.rating", "explicit"),
    ({"prompts": [{"year": "1999"}]}, "prompts.0.year", "newest"),
    ({"prompts": [{"aesthetic": "pretty"}]}, "prompts.0.aesthetic", "very aesthetic"),
    ({"prompts": [{"quality": "high quality"}]}, "prompts.0.quality", "great quality"),
    ({"prompts": [{"subject": "1girl", "charcter": "x"}]}, "prompts.0.charcter", "not permitted"),
    ({"prompts": [{"tags": [1]}]}, "prompts.0.tags.0", "string"),
    ({"prompts": [{}]}, "prompts", "empty"),
    ({"prompts": ["a"], "quality_tags": "heavy"}, "quality_tags", "standard"),
    ({"prompts": ["a"], "quality_tags": "yes"}, "quality_tags", "boolean"),
    ({"prompts": ["a"], "quality_tags_position": "middle"}, "quality_tags_position", "append"),
    ({"prompts": ["a\x00b"]}, "prompts.0", "NUL"),
    ({"prompts": ["a"], "negative_prompt": "x\x00"}, "negative_prompt", "NUL"),
    ({"prompts": [{"tags": ["solo", "\x00"]}]}, "prompts.0.tags.1", "NUL"),
]


@pytest.mark.parametrize(("body", "field", "reason"), BAD)
def test_errors_name_the_field(body: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(body)
    errors = [dict(e) for e in caught.value.errors()]
    fields = {f.field: f.reason for f in validation_fields(errors)}
    assert field in fields, fields
    assert reason in fields[field]


def test_the_api_names_the_field(api: ApiClient) -> None:
    body = {"prompts": ["1girl", {"subject": "1girl", "rating": "r18"}], "seeds": [1]}
    response = api.client.post("/v1/jobs", json=body, headers=api.auth)
    assert response.status_code == 422, response.text
    [detail] = response.json()["detail"]
    assert detail["field"] == "prompts.1.rating"
    assert "'safe', 'sensitive', 'nsfw' or 'explicit'" in detail["reason"]


def test_text_postgres_cannot_store_is_a_422_not_a_500(api: ApiClient) -> None:
    for body in (
        {"prompts": ["1girl\x00"]},
        {"prompts": [{"character": "\x00"}]},
        {"prompts": ["solo"], "prompt_replace": ["solo", "du\x00o"]},
    ):
        response = api.client.post("/v1/jobs", json=body, headers=api.auth)
        assert response.status_code == 422, response.text
        assert "NUL" in response.json()["message"]
