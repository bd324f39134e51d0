"""Scores: the operator's label ranges, the scorer's loading code on tiny models built
offline, and a failing scorer that leaves cells unscored but done."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from farm.cli import app
from models.db.tables import Item
from models.domain.scores import DEFAULT_SCORE_LABELS, Scored, best_of, parse_score_labels
from models.infra.settings import Settings, get_settings
from tests.business import render_all, tenant_app
from tests.conftest import ApiClient
from tests.tiny_classifier import build_tiny_classifier
from tests.tiny_scorer import brightness
from worker.classifier import HfImageClassifier
from worker.renderer import SimulatedRenderer
from worker.scorer import HfImageScorer


def test_the_default_labels_are_the_cards_aesthetic_ranges() -> None:
    labels = parse_score_labels(DEFAULT_SCORE_LABELS)
    assert labels.labels == ["very aesthetic", "aesthetic", "displeasing", "very displeasing"]
    found = {s: labels.label_for(s) for s in (0.9, 0.7101, 0.71, 0.5, 0.45, 0.3, 0.27, 0.0)}
    assert found == {
        0.9: "very aesthetic",
        0.7101: "very aesthetic",
        0.71: "aesthetic",  # the card's ranges leave 0.71 out; the lower label has it
        0.5: "aesthetic",
        0.45: "displeasing",
        0.3: "displeasing",
        0.27: "very displeasing",  # "≤ 0.27"
        0.0: "very displeasing",
    }
    assert labels.label_for(None) is None and labels.label_for(float("nan")) is None
    assert parse_score_labels("").label_for(0.9) is None  # no mapping: no labels


@pytest.mark.parametrize(
    ("mapping", "reason"),
    [
        ("good>0.5, bad>0.6, worse", "thresholds must go down"),
        ("good>0.5, bad>0.2", "the last entry must be a bare label"),
        ("good, bad>0.2, worst", "follows the bare label 'good'"),
        ("good>high, bad", "'high' is not a number"),
        ("good>0.5, good", "appears twice"),
        (">0.5, bad", "has no label"),
        ("good>inf, bad", "must be finite"),
        ("x" * 33 + ">0.5, bad", "longer than 32"),
    ],
)
def test_a_bad_mapping_refuses_to_start_saying_why(mapping: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_score_labels(mapping)
    with pytest.raises(ValidationError, match="FARM_SCORE_LABELS"):
        Settings(score_labels=mapping)


def test_settings_read_the_scorer_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_SCORER", "shadowlilac/aesthetic-shadow-v2")
    monkeypatch.setenv("FARM_SCORER_LABEL", "hq")
    monkeypatch.setenv("FARM_SCORE_LABELS", "keep>0.6, drop")
    monkeypatch.setenv("FARM_BEST_OF_K", "3")
    settings = Settings()
    assert (settings.scorer, settings.scorer_label, settings.best_of_k) == (
        "shadowlilac/aesthetic-shadow-v2",
        "hq",
        3,
    )
    assert settings.score_label_map.label_for(0.7) == "keep"
    monkeypatch.setenv("FARM_BEST_OF_K", "0")
    with pytest.raises(ValidationError, match="best_of_k"):
        Settings()


def test_best_of_is_per_prompt_best_first_ties_by_index() -> None:
    cells = [Scored(0, 0, 0.5), Scored(1, 0, 0.9), Scored(2, 0, 0.5), Scored(3, 1, 0.1)]
    cells += [Scored(4, 0, 0.7)]
    ranked = best_of(cells, 3)
    assert {p: [c.index for c in best] for p, best in ranked.items()} == {0: [1, 4, 0], 1: [3]}


def test_the_tiny_scorer_scores_mean_brightness(tiny_scorer: Path) -> None:
    scorer = HfImageScorer(
        str(tiny_scorer), label="", labels=parse_score_labels("bright>0.52, dark"), device="cpu"
    )
    images = [SimulatedRenderer._draw(seed, 832, 1216) for seed in range(6)]
    images.append(SimulatedRenderer._draw(0, 1024, 1024).convert("L").convert("RGB"))
    found = scorer.analyze(images)
    for image, analysis in zip(images, found, strict=True):
        assert analysis.score == pytest.approx(brightness(image), abs=1e-5)
        assert analysis.label == ("bright" if analysis.score > 0.52 else "dark")
    assert len({a.label for a in found}) == 2  # both ranges are exercised


def test_a_classifier_scores_with_its_labels_probability(tmp_path: Path) -> None:
    """The card's kind of scorer: the probability of one label of a classifier."""
    folder = build_tiny_classifier(tmp_path / "two-labels")
    images = [SimulatedRenderer._draw(seed, 1024, 1024) for seed in (0, 1)]
    flagged = HfImageClassifier(str(folder), flagged=["nsfw"], device="cpu").analyze(images)
    labels = parse_score_labels(DEFAULT_SCORE_LABELS)
    scorer = HfImageScorer(str(folder), label="NSFW", labels=labels, device="cpu")
    assert [a.score for a in scorer.analyze(images)] == pytest.approx(
        [a.score for a in flagged], abs=1e-5
    )
    with pytest.raises(ValueError, match=r"FARM_SCORER_LABEL='hq' names none of .*normal, nsfw"):
        HfImageScorer(str(folder), label="hq", labels=labels, device="cpu")


def _failures(analyzer: str) -> float:
    value = REGISTRY.get_sample_value("farm_analysis_failures_total", {"analyzer": analyzer})
    return value or 0.0


def test_a_failing_scorer_leaves_the_cell_done_and_unscored(
    settings: Settings, sessions: sessionmaker[Session], tiny_classifier: Path, tmp_path: Path
) -> None:
    """A scorer whose processor does not resize (a real misconfiguration): the model
    refuses the 1024² image. The cell is stored all the same, with no score, and the
    screening beside it still runs."""
    broken = tmp_path / "no-resize"
    shutil.copytree(build_tiny_classifier(tmp_path / "vit"), broken)
    config = json.loads((broken / "preprocessor_config.json").read_text())
    (broken / "preprocessor_config.json").write_text(json.dumps({**config, "do_resize": False}))
    before = _failures("score")
    analyzers: dict[str, Any] = {"screening_model": str(tiny_classifier), "scorer": str(broken)}
    with tenant_app(settings, sessions, scorer_label="nsfw", **analyzers) as tenant:
        job = tenant.submit(seeds=[3, 4])
        render_all(tenant.settings, tenant.model)
        assert tenant.job(job["id"])["status"] == "succeeded"
        images = tenant.images(job["id"])
    assert [(i["status"], i["score"], i["score_label"]) for i in images] == [
        ("done", None, None),
        ("done", None, None),
    ]
    assert all(set(i["analysis"]) == {"screening"} for i in images)
    assert _failures("score") == before + 1  # one call for the shard's two images
    with sessions() as session:
        scores = session.scalars(select(Item.score).where(Item.job_id == job["id"])).all()
    assert scores == [None, None]


def test_order_score_pages_best_first_then_the_unscored(
    api: ApiClient, sessions: sessionmaker[Session]
) -> None:
    """Keyset pages of 2 across ties, the scored/unscored boundary and the unscored."""
    spec = {"prompts": ["1girl"], "seeds": {"start": 0, "count": 7}, "model": "simulated"}
    job = api.client.post("/v1/jobs", json=spec, headers=api.auth).json()
    scores = {0: 0.25, 1: None, 2: 0.75, 3: 0.25, 4: None, 5: 0.9, 6: 0.25}
    with sessions.begin() as session:
        for index, score in scores.items():
            session.execute(
                update(Item)
                .where(Item.job_id == uuid.UUID(job["id"]), Item.index == index)
                .values(score=score, score_label=None if score is None else f"s{score}")
            )
    seen: list[tuple[int, float | None, str | None]] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, str | int] = {"order": "score", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.client.get(f"/v1/jobs/{job['id']}/images", params=params, headers=api.auth)
        assert page.status_code == 200, page.text
        seen += [(i["index"], i["score"], i["score_label"]) for i in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [s[0] for s in seen] == [5, 2, 0, 3, 6, 1, 4]
    assert seen[0] == (5, 0.9, "s0.9") and seen[-1] == (4, None, None)


def test_farm_worker_refuses_a_bad_mapping_at_start() -> None:
    get_settings.cache_clear()
    try:
        env = {"FARM_SCORE_LABELS": "good>0.5, bad>0.6, worse"}
        result = CliRunner().invoke(app, ["worker"], env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "FARM_SCORE_LABELS: entry 2 ('bad>0.6'): thresholds must go down" in said
