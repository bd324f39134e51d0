"""Prompt rules and recommended settings from the Animagine XL 3.1 model card."""

from __future__ import annotations

QUALITY_TAGS = "masterpiece, best quality, very aesthetic, absurdres"

DEFAULT_NEGATIVE_PROMPT = (
    "nsfw, lowres, (bad), text, error, fewer, extra, missing, worst quality, jpeg artifacts, "
    "low quality, watermark, unfinished, displeasing, oldest, early, chromatic aberration, "
    "signature, extra digits, artistic error, username, scan, [abstract]"
)

DEFAULT_STEPS = 28
DEFAULT_GUIDANCE_SCALE = 7.0
# The card recommends CFG around 5-7 and fewer than 30 steps; we accept wider
# ranges but these are the defaults.

RATING_TAGS: dict[str, str] = {
    "safe": "safe",
    "sensitive": "sensitive",
    "nsfw": "nsfw",
    "explicit": "explicit, nsfw",
}


def rating_of(prompt: str) -> str | None:
    """The card's rating tag a composed prompt carries, if any (recorded per image)."""
    tags = {t.strip().lower() for t in prompt.replace("(", ",").replace(")", ",").split(",")}
    if "explicit" in tags:
        return "explicit"
    for name in ("nsfw", "sensitive", "safe"):
        if name in tags:
            return name
    return None
