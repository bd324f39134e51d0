"""An A1111-compatible infotext reader, written from the web UI's documented format.

A transcription of ``parse_generation_parameters`` (``modules/infotext_utils.py``,
web UI 1.10) and of ``infotext_versions.parse_version``: the last line holds
``key: value`` pairs (a value in double quotes is JSON), a ``WxH`` value becomes
``key-1`` and ``key-2``, the lines before it are the prompt until ``Negative prompt:``;
a last line with fewer than three pairs belongs to the prompt. Defaults A1111 assumes
for missing keys are filled in as it does (``RNG`` GPU, ``Clip skip`` 1, ...). The
tests read the farm's PNGs with this, not with the farm's own parser.
"""

from __future__ import annotations

import json
import re
from typing import Any

from packaging import version

RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")


def _unquote(text: str) -> str:
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        loaded = json.loads(text)
    except Exception:
        return text
    return loaded if isinstance(loaded, str) else text


def parse_generation_parameters(x: str) -> dict[str, Any]:
    res: dict[str, Any] = {}
    prompt = ""
    negative_prompt = ""
    done_with_prompt = False
    *lines, lastline = x.strip().split("\n")
    if len(RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    for k, v in RE_PARAM.findall(lastline):
        if v and v[0] == '"' and v[-1] == '"':
            v = _unquote(v)
        m = RE_IMAGESIZE.match(v)
        if m is not None:
            res[f"{k}-1"] = m.group(1)
            res[f"{k}-2"] = m.group(2)
        else:
            res[k] = v
    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt
    res.setdefault("Clip skip", "1")
    res.setdefault("RNG", "GPU")  # "Missing RNG means the default was set, which is GPU RNG"
    res.setdefault("Schedule type", "Automatic")
    return res


def parse_version(text: str | None) -> version.Version | None:
    """What A1111's backward-compatibility switches read from ``Version``."""
    if text is None:
        return None
    m = re.match(r"([^-]+-[^-]+)-.*", text)
    if m:
        text = m.group(1)
    try:
        return version.parse(text)
    except Exception:
        return None
