"""`farm demo` as a newcomer runs it: a fresh directory, no services, no settings."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from models.domain.infotext import parse_infotext


def test_farm_demo_renders_the_sample_grid_with_sheets_gallery_and_manifest(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "farm", "demo", "--steps", "2", "--data-dir", str(data)],
        cwd=tmp_path,  # not the checkout: the installed package alone
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # It says plainly which model and why (no GPU on the test machine).
    assert "model: tiny-sdxl. No CUDA GPU here" in proc.stdout, out
    assert "succeeded: 18/18 images" in proc.stdout, out
    assert "Loading pipeline components" not in out  # library noise is silenced

    printed = dict(re.findall(r"^(images|gallery|manifest):\s+(\S+)", proc.stdout, re.M))
    folder = Path(printed["images"])
    assert folder.is_dir() and folder.is_relative_to(data)
    gallery, manifest_path = Path(printed["gallery"]), Path(printed["manifest"])
    assert gallery.parent == folder and manifest_path.parent == folder
    assert f"file://{gallery}" in proc.stdout

    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 18
    manifest = json.loads(manifest_path.read_text())
    assert manifest["job"]["status"] == "succeeded"
    assert manifest["model"] == {"name": "tiny-sdxl", "revision": manifest["model"]["revision"]}
    assert manifest["model"]["revision"].startswith("tiny-sdxl:v")
    assert manifest["spec"]["steps"] == 2 and len(manifest["spec"]["prompts"]) == 3
    assert [len(manifest["axes"][a]) for a in ("prompt", "bucket", "seed")] == [3, 3, 2]
    cells = manifest["cells"]
    assert [c["index"] for c in cells] == list(range(18))
    for cell in cells:
        png = folder / cell["file"]
        data_bytes = png.read_bytes()
        assert cell["status"] == "done"
        assert hashlib.sha256(data_bytes).hexdigest() == cell["sha256"]
        with Image.open(png) as image:
            assert image.size == (cell["width"], cell["height"])
            params = parse_infotext(image.info["parameters"])
        assert (params.seed, params.steps, params.prompt) == (cell["seed"], 2, cell["prompt"])
        with Image.open(folder / cell["thumb"]) as thumb:
            assert thumb.format == "JPEG" and thumb.height == 256

    for i, sheet_name in enumerate(manifest["contact_sheets"]):
        with Image.open(folder / sheet_name) as sheet:
            sheet.load()
            # 3 columns (one per bucket) and 2 rows (one per seed) of 256 px cells, and labels.
            assert sheet.format == "JPEG"
            assert 256 * 2 < sheet.height < 256 * 3 and 256 + 175 + 374 < sheet.width < 1200, i

    html = gallery.read_text()
    assert "manifest.json" in html and '"cells":' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no external assets
    for cell in cells[:3]:
        assert cell["file"] in html and cell["thumb"] in html
