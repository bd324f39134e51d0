"""Image analysis: pluggable analyzers that look at each rendered image after decode.

An ``ImageAnalyzer`` takes a shard's images and gives one ``Analysis`` (a label and a
score) per image. The runner hands each rendered shard to an analysis thread
(``worker/shard_runner.py``), so analysis overlaps the next shard's render, then on
to the writer; results are stored per cell and analyzer (``cell_analyses``).

Screening is one analyzer (worker/classifier.py: a Hugging Face image classifier,
named ``screening``): a tenant whose policy sets a threshold has every image that
scores above it held. The scorer (worker/scorer.py, named ``score``) is another: its
score and label also go to the cell's row (items.score / score_label). An analyzer's
failure leaves its results out (logged, counted in farm_analysis_failures_total); the
writer fails closed where screening is required and missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from PIL import Image

from models.db.finish_extras import SCORE_ANALYZER, AnalysisRecord
from models.infra.settings import Settings

log = logging.getLogger(__name__)

SCREENING: Final = "screening"  # the analyzer whose score a tenant's threshold is compared with
SCORE: Final = SCORE_ANALYZER  # the scorer: its results fill items.score / score_label


@dataclass(frozen=True)
class Analysis:
    label: str  # the most likely label
    score: float  # what the analyzer measures (screening: the flagged labels' probability)


class ImageAnalyzer(Protocol):
    name: str

    def analyze(self, images: Sequence[Image.Image]) -> list[Analysis]:
        """One analysis per image, in order."""
        ...


def analyze_images(
    analyzers: Sequence[ImageAnalyzer], images: Sequence[Image.Image], indexes: Sequence[int]
) -> list[AnalysisRecord]:
    """Every analyzer on every image; each cell's time is its share of the analyzer's call.
    An analyzer that fails is logged and left out, the others still run: a cell without
    a score is still a good cell, and one without screening is failed by the writer
    where its tenant requires screening (fail closed, worker/shard_writer.py)."""
    records: list[AnalysisRecord] = []
    if not images:
        return records
    for analyzer in analyzers:
        started = time.perf_counter()
        try:
            found = analyzer.analyze(images)
            if len(found) != len(images):
                raise ValueError(f"{analyzer.name}: {len(found)} results for {len(images)} images")
        except Exception:
            log.exception("analyzer %s failed on cells %s: no results", analyzer.name, indexes)
            continue
        per_image_ms = int((time.perf_counter() - started) * 1000 / len(images))
        records.extend(
            AnalysisRecord(index, analyzer.name, a.label, float(a.score), per_image_ms)
            for index, a in zip(indexes, found, strict=True)
        )
    return records


def screening_scores(records: Sequence[AnalysisRecord]) -> dict[int, float]:
    return {r.index: r.score for r in records if r.analyzer == SCREENING}


def load_analyzers(settings: Settings, device: str) -> list[ImageAnalyzer]:
    """The analyzers this worker runs: the screening classifier and the scorer, each if
    one is configured (a model that does not load stops the worker from starting)."""
    analyzers: list[ImageAnalyzer] = []
    if settings.screening_model:
        analyzers.append(_screening(settings, device))
    if settings.scorer:
        from worker.scorer import HfImageScorer  # imports torch and transformers

        scorer = HfImageScorer(
            settings.scorer,
            label=settings.scorer_label,
            labels=settings.score_label_map,
            device=device,
            cache_dir=settings.models_dir,
        )
        labels = settings.score_labels
        log.info("scoring with %s on %s (labels: %s)", settings.scorer, device, labels)
        analyzers.append(scorer)
    return analyzers


def _screening(settings: Settings, device: str) -> ImageAnalyzer:
    from worker.classifier import HfImageClassifier  # imports torch and transformers

    flagged = [label.strip() for label in settings.screening_labels.split(",") if label.strip()]
    classifier = HfImageClassifier(
        settings.screening_model,
        flagged=flagged,
        device=device,
        cache_dir=settings.models_dir,
        name=SCREENING,
    )
    log.info("screening with %s on %s (flagged: %s)", settings.screening_model, device, flagged)
    return classifier
