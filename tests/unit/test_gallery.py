"""The static gallery page: self-contained, relative links, user text inert."""

from __future__ import annotations

import json
import re
from typing import Any

from worker.gallery import build_gallery

HOSTILE = '1girl, </script><img src=x onerror="alert(1)">, smile & <b>'


def _manifest() -> dict[str, Any]:
    cells = [
        {
            "index": i,
            "prompt_index": 0,
            "prompt": HOSTILE,
            "negative_prompt": "lowres",
            "bucket": bucket,
            "width": 1024,
            "height": 1024,
            "seed": seed,
            "steps": 2,
            "guidance_scale": 7.0,
            "sampler": "euler_a",
            "status": "done",
            "key": f"r/t/j/{i:06d}_{bucket}_s{seed}.png",
            "file": f"{i:06d}_{bucket}_s{seed}.png",
            "thumb": f"thumbs/{i:06d}_{bucket}_s{seed}.jpg",
            "sha256": "0" * 64,
            "rating": None,
            "render_ms": 10,
            "error": None,
        }
        for i, (bucket, seed) in enumerate([("1024x1024", 1), ("1024x1024", 2)])
    ]
    return {
        "job": {"id": "j", "name": "<i>sheet</i>", "status": "succeeded", "done": 2, "total": 2},
        "model": {"name": "tiny-sdxl", "revision": "tiny-sdxl:v1"},
        "axes": {"prompt": [HOSTILE], "bucket": ["1024x1024"], "seed": [1, 2]},
        "contact_sheets": ["sheets/prompt_000.jpg"],
        "cells": cells,
    }


def test_user_text_cannot_close_the_script_or_inject_markup() -> None:
    page = build_gallery(_manifest())
    assert page.count("</script>") == 2  # the data block and the code block, nothing more
    assert "<img src=x" not in page and "<i>sheet</i>" not in page
    assert "&lt;i&gt;sheet&lt;/i&gt; · gallery" in page  # the title, escaped
    data = re.search(r'id="farm-data">(.*?)</script>', page, re.S)
    assert data is not None and json.loads(data.group(1)) == _manifest()


def test_self_contained_with_relative_links_only() -> None:
    page = build_gallery(_manifest())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page  # no external stylesheet
    assert not re.search(r"<script[^>]+src=", page)  # no external script
    assert 'href="manifest.json"' in page
