"""The device kit's pure parts: what travels, the requirement check, the deadline
estimates and the report (the stages themselves: tests/integration/test_bench.py)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from bench.gpu_kit import prepare, report, run
from bench.gpu_kit.stages import KitConfig, KitState


def test_the_machine_list_pins_what_the_gpu_machine_has() -> None:
    machine = prepare.machine_packages()
    assert machine["torch"] == "2.11.0"
    assert machine["transformers"] == "5.17.0"
    assert machine["huggingface-hub"] == "1.33.0"
    assert "pillow" in machine and machine["pillow"] is None  # there, version unknown
    for lacking in ("diffusers", "pydantic", "sqlalchemy", "fastapi", "celery", "torchao"):
        assert lacking not in machine


def test_boto3_stays_behind() -> None:
    # Local storage does not import it (models/infra/storage.py): 14 MiB saved.
    assert not [r for r in prepare.REQUIREMENTS if r.startswith(("boto3", "botocore"))]


def wheel(folder: Path, name: str, *requires: str) -> None:
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{name}-1.0.dist-info/METADATA", metadata)


def test_a_requirement_neither_carried_nor_there_is_reported(tmp_path: Path) -> None:
    wheel(
        tmp_path,
        "alpha",
        "beta>=1",  # carried
        "torch>=2.4",  # on the machine
        "gamma; extra == 'docs'",  # an extra: not installed
        "delta; python_version < '3.10'",  # not for Python 3.12
        "epsilon; sys_platform == 'win32'",  # not for Linux
        "zeta>=2",  # missing
    )
    wheel(tmp_path, "beta")
    unmet = prepare.unmet_requirements(tmp_path, {"torch": "2.11.0"})
    assert unmet == ["alpha-1.0-py3-none-any.whl needs zeta>=2"]


def config(*, tiny: bool = False) -> KitConfig:
    return KitConfig("cuda", tiny, 1024, 28, (1, 4), 2, Path("/tmp/kit"), 32)


def test_estimates_follow_a_cold_compile_and_not_a_cached_one() -> None:
    stage = {s.name: s for s in run.STAGES}
    state = KitState()
    assert run.estimate(stage["4_fp8"], config(), state, {}) == stage["4_fp8"].gpu_estimate_s
    assert run.estimate(stage["4_fp8"], config(tiny=True), state, {}) == 240
    assert run.estimate(stage["4_fp8"], config(), state, {"4_fp8": 7}) == 7
    measured: dict[str, Any] = {"configs": [{"compile_s": 100.0, "s_per_batch": 3.0}]}
    state.results["3_compile_default"] = measured
    assert run.estimate(stage["4_fp8"], config(), state, {}) == 1.5 * 100 + 4 * 3 + 30
    autotune = stage["6_compile_max_autotune"]
    assert run.estimate(autotune, config(), state, {}) == 3 * 100 + 4 * 3 + 30
    measured["inductor"] = {"fxgraph_cache_hit": 1}  # from the cache: says nothing
    assert run.estimate(autotune, config(), state, {}) == autotune.gpu_estimate_s


def test_the_report_rewrites_only_its_section(tmp_path: Path) -> None:
    document = tmp_path / "PERFORMANCE.md"
    document.write_text(f"# P\n\nbefore\n{report.BEGIN}\nold\n{report.END}\nafter\n")
    stages: report.Stages = {
        "1_baseline": {
            "env": {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "diffusers": "0.42.1"},
            "size": "1024x1024",
            "steps": 28,
            "cfg": 7.0,
            "configs": [{"batch": 4, "s_per_image": 2.5, "images_per_s": 0.4, "psnr_vs_fp32": 40}],
        },
        "3_compile_default": {
            "configs": [
                {
                    "batch": 4,
                    "s_per_image": 0.625,
                    "images_per_s": 1.6,
                    "psnr_vs_fp32": 38.5,
                    "compile_s": 95.0,
                }
            ]
        },
        "4_fp8": {"skipped": "torchao does not import"},
    }
    report.write(document, report.markdown(stages))
    text = document.read_text()
    assert text.startswith("# P\n\nbefore\n") and text.endswith(f"{report.END}\nafter\n")
    assert "old" not in text
    assert "NVIDIA H100 80GB HBM3, torch 2.11.0" in text
    assert "| standard tier (compile default) | 4 | 0.625 | 1.600 | 4.00× | 38.5 | 95 | |" in text
    assert "skipped: torchao does not import" in text
    assert "standard tier: 1.60 ✅ images/s" in text
    assert "4.00 ✅×" in text
    # The farm row: no file, in a run that wrote others (its deadline came first).
    assert "| the farm, embedded, end to end | | | | | | | " + report.NOT_REACHED in text
    assert report.NOT_MEASURED not in text
    assert report.NOT_MEASURED in report.markdown({})  # no run at all: no GPU lent
    unmarked = tmp_path / "unmarked.md"
    unmarked.write_text("no section\n")
    with pytest.raises(ValueError, match="no <!-- gpu-kit:begin -->"):
        report.write(unmarked, "")
