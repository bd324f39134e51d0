"""A Hugging Face image-classification model as an image analyzer (screening).

Any ``AutoModelForImageClassification`` works, from the Hub (an NSFW detector such as
``Falconsai/nsfw_image_detection``, fetched once into the model cache) or a folder:
the analysis's label is the most likely class, its score the summed probability of the
flagged labels (``FARM_SCREENING_LABELS``). Tests build a tiny one offline and load it
from a folder with this same code.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from worker.analysis import Analysis


class HfImageClassifier:
    def __init__(
        self,
        source: str,
        *,
        flagged: Collection[str],
        device: str,
        cache_dir: Path | None = None,
        name: str = "screening",
    ) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.name = name
        self.device = device
        self._torch = torch
        self.processor: Any = AutoImageProcessor.from_pretrained(source, cache_dir=cache_dir)
        model: Any = AutoModelForImageClassification.from_pretrained(source, cache_dir=cache_dir)
        self.model = model.to(device).eval()
        self.labels: dict[int, str] = {int(i): str(v) for i, v in model.config.id2label.items()}
        wanted = {label.lower() for label in flagged}
        self.flagged = [i for i, label in self.labels.items() if label.lower() in wanted]
        if not self.flagged:
            known = ", ".join(sorted(self.labels.values()))
            raise ValueError(
                f"FARM_SCREENING_LABELS={','.join(flagged)!r} names none of {source}'s "
                f"labels ({known})"
            )

    def analyze(self, images: Sequence[Image.Image]) -> list[Analysis]:
        torch = self._torch
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            probabilities = self.model(**inputs).logits.float().softmax(-1).cpu()
        results = []
        for row in probabilities:
            score = float(row[self.flagged].sum())
            results.append(Analysis(self.labels[int(row.argmax())], round(score, 6)))
        return results
