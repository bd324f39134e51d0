"""Settings of the scorer (docs/OPERATIONS.md, "Scoring images"): a mixin of ``Settings``."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from models.domain.scores import DEFAULT_SCORE_LABELS, ScoreLabels, parse_score_labels


class ScoreSettings(BaseSettings):
    # A Hugging Face image-classification model (Hub id or folder) that scores every
    # image after decode, higher is better; empty: no scoring (items.score stays NULL).
    scorer: str = ""
    # The label whose probability is the score (``hq`` for the card's aesthetic-shadow-v2);
    # a model with one output (a regression / aesthetic head) scores with that output.
    scorer_label: str = ""
    # Score ranges to words, highest first (models/domain/scores.py); empty: no labels.
    score_labels: str = DEFAULT_SCORE_LABELS
    best_of_k: int = Field(default=8, ge=1, le=64)  # cells on each prompt's "best of" sheet

    @field_validator("score_labels")
    @classmethod
    def _labels_parse(cls, value: str) -> str:
        try:
            parse_score_labels(value)
        except ValueError as exc:  # refuse to start, saying which setting and why
            raise ValueError(f"FARM_SCORE_LABELS: {exc}") from None
        return value

    @property
    def score_label_map(self) -> ScoreLabels:
        return parse_score_labels(self.score_labels)
