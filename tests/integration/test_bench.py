"""Each benchmark in bench/ runs on a small setting and prints its JSON and summary.

These check that the scripts work, not how fast anything is (docs/PERFORMANCE.md has
the numbers and how they were taken).
"""

from __future__ import annotations

import json

import pytest

from bench import (
    control_plane,
    first_image,
    gpu_busy,
    gpu_render,
    job_get,
    pad_conds,
    query_plans,
    submit_grid,
)

pytestmark = pytest.mark.slow


def _printed(capsys: pytest.CaptureFixture[str], name: str) -> dict[str, object]:
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith(f"{name}: ")
    document: dict[str, object] = json.loads(lines[-2])
    assert document["bench"] == name
    return document


def test_submit_grid(capsys: pytest.CaptureFixture[str]) -> None:
    result = submit_grid.main(["--cells", "400", "--runs", "1"])
    assert result["cells"] == 400
    _printed(capsys, "submit_grid")


def test_gpu_busy(capsys: pytest.CaptureFixture[str]) -> None:
    result = gpu_busy.main(["--images", "4", "--seconds", "0.05"])
    [run] = result["runs"]
    assert run["recorded"] == 4
    assert 0 < run["busy_share"] <= 1
    _printed(capsys, "gpu_busy")


def test_control_plane(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--images", "16", "--jobs", "2", "--workers", "1", "--noop-tasks", "50"]
    result = control_plane.main(args)
    assert result["farm"]["recorded"] == 16
    assert result["celery_noop"]["tasks"] == 50
    _printed(capsys, "control_plane")


def test_job_get(capsys: pytest.CaptureFixture[str]) -> None:
    result = job_get.main(["--duration", "1", "--connections", "4"])
    for kind in ("plain", "etag"):
        assert result[kind]["requests"] > 0
        assert result[kind]["errors"] == 0
    _printed(capsys, "job_get")


def test_first_image(capsys: pytest.CaptureFixture[str]) -> None:
    result = first_image.main(["--runs", "1", "--render-s", "0.05"])
    assert result["latency_ms"]["median"] > 50
    _printed(capsys, "first_image")


def test_query_plans(capsys: pytest.CaptureFixture[str]) -> None:
    result = query_plans.main(["--jobs", "2", "--cells", "200"])
    assert result["queries"]
    _printed(capsys, "query_plans")


def test_gpu_render_tiny_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--tiny", "--size", "128", "--steps", "1", "--batch", "1", "--iters", "1"]
    result = gpu_render.main(args)
    assert result["farm"]["images_per_s"] > 0
    _printed(capsys, "gpu_render")


def test_pad_conds(capsys: pytest.CaptureFixture[str]) -> None:
    result = pad_conds.main(["--seeds", "2", "--steps", "2", "--size", "64"])
    cases = result["cases"]
    assert cases["equal"]["max_abs_diff"] <= 2  # the two ways agree where nothing is padded
    assert cases["prompt_longer"]["prompt_tokens"] > cases["prompt_longer"]["negative_tokens"]
    _printed(capsys, "pad_conds")
