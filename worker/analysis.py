"""Image analysis: pluggable analyzers that look at each rendered image after decode.

An ``ImageAnalyzer`` takes a shard's images and gives one ``Analysis`` (a label and a
score) per image. The runner hands each rendered shard to an analysis thread
(``worker/shard_runner.py``), so analysis overlaps the next shard's render, then on
to the writer; results are stored per cell and analyzer (``cell_analyses``).

Screening is one analyzer (worker/classifier.py: a Hugging Face image classifier,
named ``screening``): a tenant whose policy sets a threshold has every image that
scores above it held. Others (an aesthetic scorer, say) plug in the same way and only
record their results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from PIL import Image

from models.db.finish_extras import AnalysisRecord
from models.infra.settings import Settings

log = logging.getLogger(__name__)

SCREENING: Final = "screening"  # the analyzer whose score a tenant's threshold is compared with


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
    An analyzer that raises is the caller's to handle (screening must not be skipped)."""
    records: list[AnalysisRecord] = []
    if not images:
        return records
    for analyzer in analyzers:
        started = time.perf_counter()
        found = analyzer.analyze(images)
        if len(found) != len(images):
            raise ValueError(f"{analyzer.name} gave {len(found)} results for {len(images)} images")
        per_image_ms = int((time.perf_counter() - started) * 1000 / len(images))
        records.extend(
            AnalysisRecord(index, analyzer.name, a.label, float(a.score), per_image_ms)
            for index, a in zip(indexes, found, strict=True)
        )
    return records


def screening_scores(records: Sequence[AnalysisRecord]) -> dict[int, float]:
    return {r.index: r.score for r in records if r.analyzer == SCREENING}


def load_analyzers(settings: Settings, device: str) -> list[ImageAnalyzer]:
    """The analyzers this worker runs: the screening classifier if one is configured."""
    if not settings.screening_model:
        return []
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
    return [classifier]
