"""The nine resolution buckets of the Animagine XL 3.1 model card."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    width: int
    height: int
    aspect: str  # the card's name, e.g. "13:19"

    @property
    def name(self) -> str:
        """Canonical ``WxH`` spelling used in keys, rows and responses."""
        return f"{self.width}x{self.height}"


BUCKETS: tuple[Bucket, ...] = (
    Bucket(1024, 1024, "1:1"),
    Bucket(1152, 896, "9:7"),
    Bucket(896, 1152, "7:9"),
    Bucket(1216, 832, "19:13"),
    Bucket(832, 1216, "13:19"),
    Bucket(1344, 768, "7:4"),
    Bucket(768, 1344, "4:7"),
    Bucket(1536, 640, "12:5"),
    Bucket(640, 1536, "5:12"),
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
