"""Styles and wildcards through the real API on Postgres: listed, checked, resolved and stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.infra.settings import Settings
from tests.conftest import ApiClient


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The shared settings, with the operator's styles file and wildcards folder."""
    styles = tmp_path / "styles.csv"
    styles.write_text(
        "name,prompt,negative_prompt\n"
        '"Ink","{prompt}, ink, monochrome","color"\n'
        '"Chibi","chibi, {prompt}",""\n'
    )
    wildcards = tmp_path / "wildcards"
    (wildcards / "hair").mkdir(parents=True)
    (wildcards / "hair" / "colour.txt").write_text("red hair\nblue hair\n{pale|dark} pink hair\n")
    (wildcards / "pose.txt").write_text("sitting\nstanding\n")
    return settings.model_copy(update={"styles_file": styles, "wildcards_dir": wildcards})


def post(api: ApiClient, body: dict[str, Any], query: str = "") -> Any:
    return api.client.post(f"/v1/jobs{query}", json=body, headers=api.auth)


def images(api: ApiClient, job_id: str) -> list[dict[str, Any]]:
    response = api.client.get(f"/v1/jobs/{job_id}/images?limit=1000", headers=api.auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_the_library_is_listed(api: ApiClient) -> None:
    styles = api.client.get("/v1/styles?limit=1", headers=api.auth).json()
    assert styles["items"] == [
        {"name": "Chibi", "prompt": "chibi, {prompt}", "negative_prompt": ""}
    ]
    rest = api.client.get(f"/v1/styles?cursor={styles['next_cursor']}", headers=api.auth).json()
    assert [s["name"] for s in rest["items"]] == ["Ink"] and rest["next_cursor"] is None
    lists = api.client.get("/v1/wildcards", headers=api.auth).json()["items"]
    assert lists == [{"name": "hair/colour", "size": 3}, {"name": "pose", "size": 2}]
    values = api.client.get("/v1/wildcards/hair/colour", headers=api.auth).json()
    assert values == {
        "name": "hair/colour",
        "values": ["red hair", "blue hair", "{pale|dark} pink hair"],
    }
    assert api.client.get("/v1/wildcards/nope", headers=api.auth).status_code == 404
    assert api.client.get("/v1/styles").status_code == 401


def test_a_combinatorial_wildcard_is_an_axis(api: ApiClient) -> None:
    body = {
        "prompts": ["1girl, __hair/colour__, __pose__"],
        "quality_tags": False,
        "seeds": [1, 2],
        "wildcard_axes": ["hair/colour"],
        "style": ["Ink", "Chibi"],
    }
    dry = post(api, body, "?dry_run=true").json()
    assert dry["axes"]["__hair/colour__"] == 3
    assert list(dry["axes"])[3:6] == ["prompt_replace", "__hair/colour__", "style"]
    assert dry["total"] == 2 * 3 * 2 == 12
    first = dry["examples"][0]
    assert first["style"] == "Ink" and json.loads(first["wildcard_values"]) == {
        "hair/colour": "red hair"
    }
    assert first["prompt"].startswith("1girl, red hair, ") and first["prompt"].endswith(
        ", ink, monochrome"
    )
    job = post(api, body).json()
    assert job["total"] == 12
    cells = images(api, job["id"])
    pinned = [json.loads(c["wildcard_values"])["hair/colour"] for c in cells[:6]]
    pink = "{pale|dark} pink hair"
    assert pinned == ["red hair", "red hair", "blue hair", "blue hair", pink, pink]
    assert [c["style"] for c in cells[:2]] == ["Ink", "Chibi"]
    third = cells[4]["prompt"]
    assert "pale pink hair" in third or "dark pink hair" in third  # resolved in turn
    assert all("__" not in c["prompt"] and "{" not in c["prompt"] for c in cells)


def test_the_same_spec_and_seed_give_the_same_text(api: ApiClient) -> None:
    body = {"prompts": ["1girl, __hair/colour__, {smile|frown}"], "seeds": list(range(12))}
    first = [c["prompt"] for c in images(api, post(api, body).json()["id"])]
    again = [c["prompt"] for c in images(api, post(api, body).json()["id"])]
    assert first == again
    assert len(set(first)) > 2  # and the seed does choose
    # A random seed is drawn once: the stored texts are those of the stored seed.
    drawn = images(api, post(api, {**body, "seeds": [-1, -1, -1]}).json()["id"])
    replay = {**body, "seeds": [c["seed"] for c in drawn]}
    assert [c["prompt"] for c in images(api, post(api, replay).json()["id"])] == [
        c["prompt"] for c in drawn
    ]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"style": ["Ink", "Oil"]}, "style.1", "unknown style 'Oil'"),
        ({"prompts": ["1girl, __hat__"]}, "prompts.0", "unknown wildcard __hat__"),
        ({"wildcard_axes": ["hat"]}, "wildcard_axes.0", "unknown wildcard __hat__"),
        ({"negative_prompt": "{lowres|"}, "negative_prompt", "never closed"),
        ({"prompts": ["[a:(b:1.2.3):2]"]}, "prompts.0", "in its text up to step 28"),
    ],
)
def test_refusals_name_the_field_and_the_name(
    api: ApiClient, changes: dict[str, Any], field: str, reason: str
) -> None:
    body = {"prompts": ["1girl"], "seeds": [1], **changes}
    for query in ("", "?dry_run=true"):
        response = post(api, body, query)
        assert response.status_code == 422, response.text
        fields = {d["field"]: d["reason"] for d in response.json()["detail"]}
        assert reason in fields[field], fields
