"""Score labels: the operator's mapping of score ranges to words (FARM_SCORE_LABELS).

Written highest first, one ``LABEL>THRESHOLD`` per range and a bare ``LABEL`` last for
everything below the lowest threshold, e.g. the default, the Animagine XL 3.1 card's
aesthetic tags on the scale of the classifier the card names
(``shadowlilac/aesthetic-shadow-v2``, whose ``hq`` probability is 0..1)::

    very aesthetic>0.71, aesthetic>0.45, displeasing>0.27, very displeasing

A score takes the first label whose threshold it is *above*. The card writes the middle
ranges as open at both ends (``> 0.45 & < 0.71``); a score of exactly 0.71 or 0.45 falls
in neither there, and gets the lower label here. An empty mapping labels nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

DEFAULT_SCORE_LABELS: Final = (
    "very aesthetic>0.71, aesthetic>0.45, displeasing>0.27, very displeasing"
)
MAX_LABEL_CHARS: Final = 32  # items.score_label holds 32


@dataclass(frozen=True)
class ScoreLabels:
    ranges: tuple[tuple[str, float], ...]  # (label, exclusive lower bound), highest first
    floor: str | None  # the label below the lowest bound (None: an empty mapping)

    def label_for(self, score: float | None) -> str | None:
        if score is None or math.isnan(score):
            return None
        for label, above in self.ranges:
            if score > above:
                return label
        return self.floor

    @property
    def labels(self) -> list[str]:
        """Every label, best first."""
        return [label for label, _ in self.ranges] + ([self.floor] if self.floor else [])


def parse_score_labels(text: str) -> ScoreLabels:
    """The mapping written in ``text``, or ValueError saying what is wrong with it."""
    entries = [part.strip() for part in text.split(",")]
    if entries == [""]:
        return ScoreLabels((), None)
    ranges: list[tuple[str, float]] = []
    floor: str | None = None
    for position, entry in enumerate(entries, start=1):
        if floor is not None:
            raise ValueError(f"entry {position} ({entry!r}) follows the bare label {floor!r}")
        label, sep, bound = (part.strip() for part in entry.partition(">"))
        if not label:
            raise ValueError(f"entry {position} ({entry!r}) has no label")
        if len(label) > MAX_LABEL_CHARS:
            raise ValueError(f"label {label!r} is longer than {MAX_LABEL_CHARS} characters")
        if label in {known for known, _ in ranges}:
            raise ValueError(f"label {label!r} appears twice")
        if not sep:
            floor = label
            continue
        try:
            threshold = float(bound)
        except ValueError:
            raise ValueError(f"entry {position} ({entry!r}): {bound!r} is not a number") from None
        if not math.isfinite(threshold):
            raise ValueError(f"entry {position} ({entry!r}): the threshold must be finite")
        if ranges and threshold >= ranges[-1][1]:
            raise ValueError(
                f"entry {position} ({entry!r}): thresholds must go down, highest first "
                f"({threshold} after {ranges[-1][1]})"
            )
        ranges.append((label, threshold))
    if floor is None:
        raise ValueError("the last entry must be a bare label (scores below the lowest range)")
    return ScoreLabels(tuple(ranges), floor)


@dataclass(frozen=True)
class Scored:
    index: int
    prompt_index: int
    score: float


def best_of(cells: list[Scored], k: int) -> dict[int, list[Scored]]:
    """Each prompt's ``k`` best cells, across its seeds, buckets and other axes: score
    descending, then index (the order of ``?order=score``, the gallery and the sheets)."""
    ranked: dict[int, list[Scored]] = {}
    for cell in sorted(cells, key=lambda c: (-c.score, c.index)):
        chosen = ranked.setdefault(cell.prompt_index, [])
        if len(chosen) < k:
            chosen.append(cell)
    return ranked
