"""The scorer: a Hugging Face image-classification model that ranks every image (FARM_SCORER).

An analyzer like screening (worker/analysis.py), run by the same analysis thread right
after decode, off the GPU's critical path: the next shard renders meanwhile. Its score,
higher is better, and the label the operator's ranges give it (FARM_SCORE_LABELS) are
stored with the cell (items.score / score_label).

The score is the probability of one label (FARM_SCORER_LABEL) of a classifier (the
Animagine card's aesthetic tags came from ``shadowlilac/aesthetic-shadow-v2``: label
``hq``), or, for a model with a single output (a regression / aesthetic-predictor head),
that output as it is. Tests build a tiny one offline whose output is the image's mean
brightness (tests/tiny_scorer.py) and load it from a folder with this same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from models.domain.scores import ScoreLabels
from worker.analysis import SCORE, Analysis

log = logging.getLogger(__name__)


class HfImageScorer:
    name = SCORE

    def __init__(
        self,
        source: str,
        *,
        label: str,
        labels: ScoreLabels,
        device: str,
        cache_dir: Path | None = None,
        batch_size: int = 16,
    ) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self._torch = torch
        self.device = device
        self.labels = labels
        self.batch_size = batch_size
        # Half precision on a GPU: a ViT-sized scorer then costs milliseconds per image.
        self.dtype = torch.float16 if device.startswith("cuda") else torch.float32
        self.processor: Any = AutoImageProcessor.from_pretrained(source, cache_dir=cache_dir)
        model: Any = AutoModelForImageClassification.from_pretrained(
            source, cache_dir=cache_dir, dtype=self.dtype
        )
        self.model = model.to(device).eval()
        names = {int(i): str(v) for i, v in model.config.id2label.items()}
        self.output: int | None = None  # None: one output, the score itself
        if model.config.num_labels > 1:
            found = [i for i, name in names.items() if name.lower() == label.strip().lower()]
            if not found:
                known = ", ".join(sorted(names.values()))
                raise ValueError(
                    f"FARM_SCORER_LABEL={label!r} names none of {source}'s labels ({known}): "
                    "set it to the label whose probability is the score"
                )
            self.output = found[0]
        elif label:
            log.warning(
                "%s has one output, its score: FARM_SCORER_LABEL=%r is not used", source, label
            )

    def scores(self, images: Sequence[Image.Image]) -> list[float]:
        """One score per image, in order, in batches of ``batch_size``."""
        torch = self._torch
        found: list[float] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            inputs = self.processor(images=chunk, return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device, self.dtype)
            with torch.inference_mode():
                logits = self.model(pixel_values=pixels).logits.float()
            # One output: the score itself; else the probability of the score's label.
            values = logits[:, 0] if self.output is None else logits.softmax(-1)[:, self.output]
            found += [float(v) for v in values.cpu()]
        return found

    def analyze(self, images: Sequence[Image.Image]) -> list[Analysis]:
        return [
            Analysis(self.labels.label_for(score) or "", round(score, 6))
            for score in self.scores(images)
        ]
