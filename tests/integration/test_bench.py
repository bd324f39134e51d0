"""Each benchmark in bench/ runs on a small setting and prints its JSON and summary.

These check that the scripts work, not how fast anything is (docs/PERFORMANCE.md has
the numbers and how they were taken).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import (
    control_plane,
    first_image,
    gpu_busy,
    gpu_render,
    job_get,
    pad_conds,
    query_plans,
    refine_hires,
    s3_upload,
    scorer,
    submit_grid,
)
from bench.gpu_kit import report, run
from tests.tiers import COMPILE_TIMEOUT_S, COMPILE_WARNINGS, SEEDS, SIZE, STEPS, CompiledTier

ROOT = Path(__file__).resolve().parents[2]

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


def test_scorer(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--scorer", "tiny", "--model", "simulated:0.01", "--images", "4", "--rounds", "1"]
    result = scorer.main(args)
    assert [(r["scorer"], r["images"], r["scored"]) for r in result["runs"]] == [
        (False, 4, 0),
        (True, 4, 4),
    ]
    assert result["cost"]["ms_per_image"] > 0
    _printed(capsys, "scorer")


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


def test_refine_hires_tiny_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--cells", "1", "--size", "64x64", "--steps", "1", "--hires-steps", "1"]
    result = refine_hires.main([*args, "--repeats", "1"])
    assert result["output"] == "96x96"
    assert all(s > 0 for s in result["seconds"].values())
    _printed(capsys, "refine_hires")


def _gpu_kit(out: Path, *args: str, env: dict[str, str] | None = None) -> int:
    """The device kit's run, as the GPU machine starts it: a process of its own (its
    watchdog ends the process at the deadline)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_kit.run", "--tiny", "--out", str(out), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "stderr.txt").write_text(done.stderr)
    return done.returncode


def _stages(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


@pytest.mark.filterwarnings(*COMPILE_WARNINGS)
@pytest.mark.timeout(COMPILE_TIMEOUT_S)
def test_gpu_kit_rehearses_every_stage_on_cpu(
    standard_tier_compiled: CompiledTier, tmp_path: Path
) -> None:
    """The kit's stages on CPU with the tiny model, at the shapes of the switch tests:
    its compiled stage loads the session's compiled standard tier from the cache."""
    out = tmp_path / "out"
    rc = _gpu_kit(
        out,
        *("--size", str(SIZE), "--steps", str(STEPS), "--batches", f"1,{len(SEEDS)}"),
        *("--iters", "1", "--farm-images", "4", "--seconds", "300"),
        *("--work", str(tmp_path / "work"), "--estimate", "3_compile_default=60"),
        *("--estimate", "6_compile_max_autotune=1000"),  # a cold compile: too long for CI
        env={"TORCHINDUCTOR_CACHE_DIR": str(standard_tier_compiled.cache_dir)},
    )
    stages = _stages(out)
    assert rc == 0, (out / "stderr.txt").read_text()[-3000:]
    assert list(stages) == [stage.name for stage in sorted(run.STAGES, key=lambda s: s.name)]
    for name in ("0_model", "1_baseline", "2_eager", "3_compile_default", "5_farm"):
        assert "stage_s" in stages[name], stages[name]
        assert stages[name]["env"]["device"] == "cpu"
    assert stages["0_model"]["tiers_available"]["fast"] is not None
    # Every configuration is measured against the fp32 reference on the same seeds.
    for name in ("1_baseline", "2_eager", "3_compile_default"):
        for config in stages[name]["configs"]:
            assert config["images_per_s"] > 0
            assert config["psnr_vs_fp32"] > 35  # fp16 / bf16 drift (the switch tests: 46+)
    compiled = stages["3_compile_default"]
    assert compiled["inductor"]["fxgraph_cache_hit"] >= 1  # from the session's cache
    assert compiled["inductor"].get("fxgraph_cache_miss", 0) == 0
    farm = stages["5_farm"]
    assert (farm["images"], farm["status"]) == (4, "succeeded")
    assert 0 < farm["gpu_busy_share"] <= 1
    assert "CPU" in stages["4_fp8"]["skipped"]  # no FP8 here, and the file says why
    assert stages["6_compile_max_autotune"]["skipped"].startswith("needs ~1000 s")
    # The report turns the files into the GPU table of docs/PERFORMANCE.md.
    table = report.markdown(report.load(out))
    assert "| plain diffusers fp16 |" in table


def test_gpu_kit_skips_what_does_not_fit_and_stops_at_the_deadline(tmp_path: Path) -> None:
    skipped = tmp_path / "skipped"
    assert _gpu_kit(skipped, "--seconds", "1") == 0
    stages = _stages(skipped)
    assert stages["0_model"]["skipped"].startswith("needs ~20 s")
    assert all("skipped" in stages[s.name] for s in run.STAGES)
    # A stage that starts but outlives the deadline: the watchdog records it and ends.
    stopped = tmp_path / "stopped"
    # 10,000 steps: the reference render cannot end within the 3 s the run is given.
    args = ("--seconds", "3", "--estimate", "0_model=0", "--size", "64", "--steps", "10000")
    assert _gpu_kit(stopped, *args) == 3
    assert _stages(stopped)["0_model"]["stopped"].startswith("the deadline came")


def test_pad_conds(capsys: pytest.CaptureFixture[str]) -> None:
    result = pad_conds.main(["--seeds", "2", "--steps", "2", "--size", "64"])
    cases = result["cases"]
    assert cases["equal"]["max_abs_diff"] <= 2  # the two ways agree where nothing is padded
    assert cases["prompt_longer"]["prompt_tokens"] > cases["prompt_longer"]["negative_tokens"]
    _printed(capsys, "pad_conds")


def test_s3_upload(capsys: pytest.CaptureFixture[str]) -> None:
    result = s3_upload.main(["--uploads", "2", "--size-kb", "4", "--starts", "1"])
    assert len(result["seaweedfs_start_s"]) == 1
    assert result["moto"]["wall_ms_p50"] > 0 and result["seaweedfs"]["wall_ms_p50"] > 0
    _printed(capsys, "s3_upload")
