"""Model sources: what an operator names in ``FARM_MODELS`` (name -> source), parsed.

tiny-sdxl                          a tiny random SDXL built offline (tests, CPU smoke)
simulated / simulated:0.5          no model; a renderer that sleeps (load tests)
/models/animagine-xl-3.1           a diffusers folder (also ./rel, ~/rel)
/models/animagine-xl-3.1.safetensors  an A1111-style single checkpoint (.ckpt too)
cagliostrolab/animagine-xl-3.1[@rev]  a Hugging Face Hub repo, optionally pinned

Parsing needs no torch: the API and the settings check sources at start-up; the worker
loads them (worker/model_loading.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SourceKind = Literal["hub", "folder", "single_file", "tiny", "simulated"]


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    location: str
    seconds_per_image: float = 0.0


# owner/name as the Hub allows them, then an optional @revision (branch, tag, commit).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(@[\w./-]+)?")
_SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_FOLDER_PREFIXES = ("/", "./", "../", "~")


def parse_model_source(source: str) -> ModelSource:
    text = source.strip()
    if text == "tiny-sdxl":
        return ModelSource("tiny", text)
    if text == "simulated" or text.startswith("simulated:"):
        return ModelSource("simulated", "simulated", _parse_seconds(text))
    if text.lower().endswith(_SINGLE_FILE_SUFFIXES):
        return ModelSource("single_file", text)
    if text.startswith(_FOLDER_PREFIXES) or (text and Path(text).is_dir()):
        return ModelSource("folder", text)
    if _HUB_ID.fullmatch(text) and "--" not in text and ".." not in text:
        return ModelSource("hub", text)
    raise ValueError(
        f"model source {source!r} is not one of: 'tiny-sdxl', 'simulated[:SECONDS]', "
        "a path to a .safetensors/.ckpt file, a diffusers folder (an existing directory, "
        "or a path starting with '/', './', '../' or '~'), or a Hub id 'owner/name[@revision]'"
    )


def _parse_seconds(text: str) -> float:
    _, _, value = text.partition(":")
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"simulated seconds per image must be a number >= 0, got {value!r}")
    return seconds
