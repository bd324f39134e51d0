"""The nine resolution buckets of the Animagine XL 3.1 model card, and what each costs.

``seconds_28``: seconds per image at 28 steps with CFG on one H100, bf16, for a well-tuned
diffusers pipeline (the dry-run estimate, models/domain/estimate.py). Derivation
(shared/NOTES.md, FLOPs counted on the meta device): a 1024² image at 28 steps with CFG
is 389.3 TFLOP (28 UNet forwards at batch 2, 13.52 TFLOP each, plus a 10.47 TFLOP VAE
decode); 832×1216 is 374.3 TFLOP. At 50% of the H100's ~790 TFLOP/s dense bf16
(395 TFLOP/s) that is 0.986 s and 0.948 s. The other buckets scale with their pixel
count (within 0.4% of the counted 832×1216 figure). The published anchors agree:
MLPerf's TensorRT H100 does ~0.85 s at 28 steps, an A100 with diffusers ~2.3 s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    width: int
    height: int
    aspect: str  # the card's name, e.g. "13:19"
    seconds_28: float  # one H100, 28 steps with CFG (see the module docstring)

    @property
    def name(self) -> str:
        """Canonical ``WxH`` spelling used in keys, rows and responses."""
        return f"{self.width}x{self.height}"


BUCKETS: tuple[Bucket, ...] = (
    Bucket(1024, 1024, "1:1", 0.986),
    Bucket(1152, 896, "9:7", 0.97),
    Bucket(896, 1152, "7:9", 0.97),
    Bucket(1216, 832, "19:13", 0.948),
    Bucket(832, 1216, "13:19", 0.948),
    Bucket(1344, 768, "7:4", 0.97),
    Bucket(768, 1344, "4:7", 0.97),
    Bucket(1536, 640, "12:5", 0.924),
    Bucket(640, 1536, "5:12", 0.924),
)
DEFAULT_BUCKET = "1024x1024"

_BY_KEY: dict[str, Bucket] = {b.name: b for b in BUCKETS} | {b.aspect: b for b in BUCKETS}


def parse_bucket(value: str) -> Bucket:
    """Accept ``"832x1216"`` (any case, ``×`` too) or the aspect name ``"13:19"``."""
    key = value.strip().lower().replace("×", "x").replace(" ", "")
    bucket = _BY_KEY.get(key)
    if bucket is None:
        valid = ", ".join(f"{b.name} ({b.aspect})" for b in BUCKETS)
        raise ValueError(f"unknown bucket {value!r}; the model card's buckets are: {valid}")
    return bucket
