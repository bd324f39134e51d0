"""LoRAs at the door: GET /v1/loras, and every refusal a 422 naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from models.infra.queue import LocalPublisher
from models.infra.settings import Settings
from tests.conftest import ApiClient
from tests.tiny_loras import TinyLoras, build_tiny_loras, farm_loras


@pytest.fixture(scope="module")
def tiny_loras(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyLoras:
    return build_tiny_loras(model_cache / "tiny-sdxl", tmp_path_factory.mktemp("loras"))


@pytest.fixture
def lora_api(api: ApiClient, tiny_loras: TinyLoras) -> Iterator[ApiClient]:
    loras = {**farm_loras(tiny_loras), "gone": "/nowhere/gone.safetensors"}
    settings = api.settings.model_copy(update={"loras": Settings(loras=loras).loras})
    publisher = LocalPublisher()
    with TestClient(create_app(settings, publisher=publisher)) as client:
        yield ApiClient(client, api.key, publisher, settings)


def dry_run(api: ApiClient, **spec: Any) -> Any:
    body = {"prompts": ["1girl"], "seeds": [1, 2], "steps": 2, **spec}
    return api.client.post("/v1/jobs?dry_run=true", json=body, headers=api.auth)


def test_the_list_shows_hash_base_model_trigger_words_and_source(lora_api: ApiClient) -> None:
    response = lora_api.client.get("/v1/loras", headers=lora_api.auth)
    assert response.status_code == 200
    items = {item["name"]: item for item in response.json()["items"]}
    style = items["style"]
    assert style["available"] and style["hash"] == style["sha256"][:12]
    assert style["trigger_words"] == ["tinystyle"] and style["url"] == "local"
    assert items["sd15"]["base_model"] == "sd1"
    assert items["style-kohya"]["base_model"] == "tiny-sdxl"
    assert not items["gone"]["available"] and "no such file" in items["gone"]["error"]


def test_lora_sets_are_an_axis_of_the_dry_run(lora_api: ApiClient) -> None:
    sets = [[{"name": "style", "weight": 0.5}], [{"name": "style"}], []]
    response = dry_run(lora_api, lora_sets=sets, loras=[{"name": "text"}])
    assert response.status_code == 200, response.text
    assert response.json()["axes"]["lora_sets"] == 3
    assert response.json()["total"] == 6


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"loras": [{"name": "nope"}]}, "loras.0.name", "unknown LoRA 'nope'"),
        ({"loras": [{"name": "sd15"}]}, "loras.0.name", "built for sd1"),
        ({"loras": [{"name": "gone"}]}, "loras.0.name", "cannot be used now"),
        ({"loras": [{"name": "style", "weight": 9.0}]}, "loras.0.weight", "less than or equal"),
        ({"loras": [{"name": "../x"}]}, "loras.0.name", "pattern"),
        ({"lora_sets": [[{"name": "other"}], [{"name": "nope"}]]}, "lora_sets.1.0.name", "nope"),
        ({"lora_sets": [[], []]}, "lora_sets", "repeated"),
        ({"prompts": ["1girl, <lora:nope:1>"]}, "prompts.0", "unknown LoRA 'nope'"),
        ({"prompts": ["1girl, <lora:style:7>"]}, "prompts.0", "outside -5..5"),
        ({"prompts": ["1girl, <hypernet:x:1>"]}, "prompts.0", "<lora:...> extra networks only"),
        ({"prompts": ["<lora:style:1>"], "loras": [{"name": "style"}]}, "prompts.0", "twice"),
        ({"negative_prompt": "<lora:style:1>"}, "negative_prompt", "belongs in the prompt"),
        (
            {"prompts": ["{<lora:style:1>|<lora:nope:1>}"]},
            "prompts.0",
            "unknown LoRA 'nope'",
        ),
    ],
)
def test_refusals_name_the_field(
    lora_api: ApiClient, spec: dict[str, Any], field: str, reason: str
) -> None:
    response = dry_run(lora_api, seeds=[1, 2, 3, 4, 5, 6, 7, 8], **spec)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["field"] == field and reason in e["reason"] for e in errors), errors


def test_a_tag_applies_its_lora_and_a_prompt_s_r_sweeps_its_weight(lora_api: ApiClient) -> None:
    response = lora_api.client.post(
        "/v1/jobs",
        json={
            "prompts": ["1girl, <lora:style:0.5>"],
            "prompt_replace": ["<lora:style:0.5>", "<lora:style:1>"],
            "seeds": [1],
            "steps": 2,
            "model": "simulated",
        },
        headers=lora_api.auth,
    )
    assert response.status_code == 201, response.text
    images = lora_api.client.get(f"/v1/jobs/{response.json()['id']}/images", headers=lora_api.auth)
    loras = [item["loras"] for item in images.json()["items"]]
    assert [[(u["name"], u["weight"]) for u in set_] for set_ in loras] == [
        [("style", 0.5)],
        [("style", 1.0)],
    ]
    assert all(len(set_[0]["sha256"]) == 64 for set_ in loras)
