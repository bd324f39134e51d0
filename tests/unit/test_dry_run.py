"""``POST /v1/jobs?dry_run=true``: checked and counted, nothing created or published."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.tables import Item, Job, Shard
from models.domain.buckets import parse_bucket
from models.domain.spec import AXIS_ORDER
from tests.conftest import ApiClient

GRID: dict[str, Any] = {
    "prompts": ["1girl, solo", {"subject": "1boy", "rating": "safe"}],
    "buckets": ["1:1", "13:19"],
    "seeds": {"start": 1, "count": 3},
    "sampler": ["Euler a", "DPM++ 2M Karras"],
    "guidance_scale": [5, 7],
}


def counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions() as session:
        return tuple(  # type: ignore[return-value]
            int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (Job, Item, Shard)
        )


def test_dry_run_counts_and_creates_nothing(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    before = counts(sessions)
    response = api.client.post("/v1/jobs?dry_run=true", json=GRID, headers=api.auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True
    assert body["total"] == 2 * 2 * 3 * 2 * 2 == 48
    assert body["axes"] == {
        "prompts": 2,
        "buckets": 2,
        "seeds": 3,
        "prompt_replace": 1,
        "style": 1,
        "lora_sets": 1,
        "sampler": 2,
        "steps": 1,
        "guidance_scale": 2,
        "quality_tier": 1,
    }
    assert list(body["axes"]) == list(AXIS_ORDER)  # outermost first, as documented
    # 28 steps with CFG: each cell costs its bucket's table time.
    expected = 24 * (parse_bucket("1024x1024").seconds_28 + parse_bucket("832x1216").seconds_28)
    assert body["estimated_gpu_seconds"] == pytest.approx(expected, abs=0.1)
    assert "id" not in body and "location" not in response.headers
    assert counts(sessions) == before
    assert api.publisher.queue.empty()
    # The real submission makes exactly what the dry run counted.
    created = api.client.post("/v1/jobs", json=GRID, headers=api.auth)
    assert created.status_code == 201 and created.json()["total"] == 48
    after = counts(sessions)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 48)


def test_dry_run_scales_the_estimate_with_steps(api: ApiClient) -> None:
    def estimate(steps: int) -> float:
        body = {"prompts": ["a"], "seeds": [1], "steps": steps}
        response = api.client.post("/v1/jobs?dry_run=true", json=body, headers=api.auth)
        value: float = response.json()["estimated_gpu_seconds"]
        return value

    assert estimate(28) == pytest.approx(parse_bucket("1024x1024").seconds_28, abs=0.05)
    assert estimate(56) == pytest.approx(2 * estimate(28), rel=0.05)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompts": ["a"], "sampler": ["euler", "nope"]}, "sampler.1"),
        (
            {"prompts": ["a"] * 10, "seeds": {"start": 0, "count": 500}, "steps": [1, 2, 3]},
            "prompts",
        ),
    ],
)
def test_dry_run_validates_like_a_submission(
    api: ApiClient, sessions: sessionmaker[Session], body: dict[str, Any], field: str
) -> None:
    before = counts(sessions)
    response = api.client.post("/v1/jobs?dry_run=true", json=body, headers=api.auth)
    assert response.status_code == 422, response.text
    assert field in {d["field"] for d in response.json()["detail"]}
    assert counts(sessions) == before


def test_dry_run_needs_a_key(api: ApiClient) -> None:
    assert api.client.post("/v1/jobs?dry_run=true", json=GRID).status_code == 401
