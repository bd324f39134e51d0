"""Importing the worker does nothing; its start-up functions do what the import used to.

Each check runs in a fresh interpreter (tests/unit/_worker_start_probe.py): Celery's
signals and prometheus_client's registry are process-wide, and this process has
imported the worker long ago. FARM_* point nowhere, and reading settings raises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from models.infra import metric_names as names

ROOT = Path(__file__).resolve().parents[2]
WORKER_NAMES = [names.IMAGES, names.RENDER_SECONDS, names.UPLOAD_SECONDS, names.JOB_LATENCY]
WORKER_NAMES += [names.GPU_SECONDS, names.ANALYSIS_SECONDS, names.IMAGES_HELD]
WORKER_NAMES += [names.ANALYSIS_FAILURES]
WORKER_FAMILIES = sorted(name.removesuffix("_total") for name in [*WORKER_NAMES, names.JOBS])


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    nowhere = tmp_path_factory.mktemp("nowhere") / "absent"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(
        FARM_DATA_DIR=str(nowhere),
        FARM_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        FARM_BROKER_URL="redis://127.0.0.1:1/0",
        FARM_S3_BUCKET="nowhere",
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit._worker_start_probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not nowhere.exists()  # no data folder, no secret key written
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_importing_the_worker_has_no_side_effects(probe: dict[str, Any]) -> None:
    imported = probe["import"]  # reading settings would have raised
    assert imported["imported"] == ["worker.celery_app", "worker.metrics", "worker.runtime"]
    assert imported["celery_apps"] == 0
    assert imported["farm_families"] == []
    assert imported["receivers"] == {
        "worker_process_init": 0,
        "setup_logging": 0,
        "worker_shutdown": 0,
    }
    assert imported["threads"] == ["MainThread"]


def test_the_celery_start_up_builds_the_app_and_connects_the_signals(
    probe: dict[str, Any],
) -> None:
    started = probe["start_up"]  # with get_settings() raising: settings come in
    assert started["celery_apps"] == 1
    assert started["task_registered"]  # farm.render_shard, on the model's own queue
    assert started["task_queue"] == "render.simulated"
    assert started["task_error"] == "worker not initialised"  # the task reaches the process
    assert started["receivers"] == {
        "worker_process_init": 1,
        "setup_logging": 1,
        "worker_shutdown": 1,
    }


def test_the_metrics_start_up_registers_them_once(probe: dict[str, Any]) -> None:
    started = probe["start_up"]
    assert started["farm_families"] == WORKER_FAMILIES
    assert started["gpu_memory_registered"]  # absent from a scrape without CUDA, but there
    assert started["images_sample"] == 1.0  # the second call kept the first's counters
    assert not started["created_series"]
