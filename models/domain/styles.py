"""Styles: named presets that wrap a prompt and extend the negative prompt (A1111's styles.csv).

A style has a prompt part and a negative part. Applying it follows the web UI's
``modules/styles.py`` (``merge_prompts``): a part containing ``{prompt}`` has that
placeholder replaced by the text; a part without one is appended after ``", "``
(either side empty: no separator). The expanded text is what a cell stores, encodes and
writes to its PNG: no ``Styles array`` in the infotext, so any reader sees the real prompt.

The shipped defaults are the Animagine XL 3.1 demo's presets (its ``config.py``
``style_list``); an operator replaces them with a styles file (FARM_STYLES_FILE,
models/infra/prompt_library.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PLACEHOLDER: Final = "{prompt}"


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge_prompts(style_text: str, text: str) -> str:
    """A1111's ``merge_prompts``: the style part around or after ``text``."""
    if PLACEHOLDER in style_text:
        return style_text.replace(PLACEHOLDER, text)
    return ", ".join(part for part in (text.strip(), style_text.strip()) if part)


def merged_length(style_text: str, text: str) -> int:
    """``len(merge_prompts(style_text, text))`` without building it."""
    found = style_text.count(PLACEHOLDER)
    if found:
        return len(style_text) + found * (len(text) - len(PLACEHOLDER))
    parts = [len(text.strip()), len(style_text.strip())]
    return sum(parts) + (2 if all(parts) else 0)


def apply_style(style: Style | None, prompt: str, negative_prompt: str) -> tuple[str, str]:
    """The prompt and negative prompt with ``style`` applied (None: unchanged)."""
    if style is None:
        return prompt, negative_prompt
    return merge_prompts(style.prompt, prompt), merge_prompts(
        style.negative_prompt, negative_prompt
    )


# The Animagine XL 3.1 demo's styles (cagliostrolab's Space, config.py), verbatim.
ANIMAGINE_STYLES: Final = (
    Style("(None)", "{prompt}", ""),
    Style(
        "Cinematic",
        "{prompt}, cinematic still, emotional, harmonious, vignette, highly detailed, high "
        "budget, bokeh, cinemascope, moody, epic, gorgeous, film grain, grainy",
        "nsfw, cartoon, graphic, text, painting, crayon, graphite, abstract, glitch, deformed, "
        "mutated, ugly, disfigured",
    ),
    Style(
        "Photographic",
        "{prompt}, cinematic photo, 35mm photograph, film, bokeh, professional, 4k, highly "
        "detailed",
        "nsfw, drawing, painting, crayon, sketch, graphite, impressionist, noisy, blurry, soft, "
        "deformed, ugly",
    ),
    Style(
        "Anime",
        "{prompt}, anime artwork, anime style, key visual, vibrant, studio anime, highly detailed",
        "nsfw, photo, deformed, black and white, realism, disfigured, low contrast",
    ),
    Style(
        "Manga",
        "{prompt}, manga style, vibrant, high-energy, detailed, iconic, Japanese comic style",
        "nsfw, ugly, deformed, noisy, blurry, low contrast, realism, photorealistic, Western "
        "comic style",
    ),
    Style(
        "Digital Art",
        "{prompt}, concept art, digital artwork, illustrative, painterly, matte painting, "
        "highly detailed",
        "nsfw, photo, photorealistic, realism, ugly",
    ),
    Style(
        "Pixel art",
        "{prompt}, pixel-art, low-res, blocky, pixel art style, 8-bit graphics",
        "nsfw, sloppy, messy, blurry, noisy, highly detailed, ultra textured, photo, realistic",
    ),
    Style(
        "Fantasy art",
        "{prompt}, ethereal fantasy concept art, magnificent, celestial, ethereal, painterly, "
        "epic, majestic, magical, fantasy art, cover art, dreamy",
        "nsfw, photographic, realistic, realism, 35mm film, dslr, cropped, frame, text, "
        "deformed, glitch, noise, noisy, off-center, deformed, cross-eyed, closed eyes, bad "
        "anatomy, ugly, disfigured, sloppy, duplicate, mutated, black and white",
    ),
    Style(
        "Neonpunk",
        "{prompt}, neonpunk style, cyberpunk, vaporwave, neon, vibes, vibrant, stunningly "
        "beautiful, crisp, detailed, sleek, ultramodern, magenta highlights, dark purple "
        "shadows, high contrast, cinematic, ultra detailed, intricate, professional",
        "nsfw, painting, drawing, illustration, glitch, deformed, mutated, cross-eyed, ugly, "
        "disfigured",
    ),
    Style(
        "3D Model",
        "{prompt}, professional 3d model, octane render, highly detailed, volumetric, dramatic "
        "lighting",
        "nsfw, ugly, deformed, noisy, low poly, blurry, painting",
    ),
)
