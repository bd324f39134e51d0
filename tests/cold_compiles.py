"""The suite's two cold torch.compile runs, started in the background when the session
begins (``pytest_collection_finish`` in tests/conftest.py), one after the other.

Each is minutes of CPU on 2 cores (70-90 s cold on a quiet machine) that the tests
needing them used to wait for; a session leaves about a core idle on average (tests
waiting on processes, services and conditions), so started at the first test they are
mostly done before their tests run. They are the same runs as before, in processes of
their own:

- ``standard``: the tiny model's standard tier compiled into a fresh Inductor cache
  (``python -m tests.cold_compiles``); ``standard_tier_compiled`` then compiles the same
  graphs in-process from that cache (Inductor's FX graph cache: seconds, not minutes);
- ``probe``: ``tests/unit/compile_probe.py``'s first, cold run, whose result
  ``test_compile_warm_up_and_a_second_process_from_the_cache`` checks as before.

A session that selects neither test starts nothing; a test run alone without them runs
its compile itself (``run_now``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE_TEST = (
    "tests/unit/test_gpu_switches.py::test_compile_warm_up_and_a_second_process_from_the_cache"
)
STANDARD_FIXTURE = "standard_tier_compiled"
# Where tests/conftest.py keeps the session's background compiles and their model.
BACKGROUND = pytest.StashKey["Background"]()
MODELS = "models"


@dataclass(frozen=True)
class Compile:
    """One cold compile: its command and the Inductor cache it fills."""

    name: str
    argv: list[str]
    cache_dir: Path
    pixels: Path | None = None  # where the probe saves its render

    def start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(self.cache_dir)}
        env["PYTHONPATH"] = str(ROOT)
        return subprocess.Popen(
            self.argv,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self) -> subprocess.CompletedProcess[str]:
        """In the foreground (a session that did not start it in the background)."""
        process = self.start()
        out, err = process.communicate()
        return subprocess.CompletedProcess(self.argv, process.returncode, out, err)


def standard(model: Path, cache_dir: Path) -> Compile:
    argv = [sys.executable, "-m", "tests.cold_compiles", str(model), str(cache_dir)]
    return Compile("standard", argv, cache_dir)


def probe(model: Path, cache_dir: Path, pixels: Path) -> Compile:
    argv = [sys.executable, "-m", "tests.unit.compile_probe", str(model), str(pixels)]
    return Compile("probe", argv, cache_dir, pixels)


@dataclass
class Background:
    """Runs its compiles one after the other on a thread; ``result`` waits for one."""

    folder: Path  # the model and the compiles' caches, removed by ``stop``
    compiles: list[Compile]
    _done: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    _ready: threading.Condition = field(default_factory=threading.Condition)
    _running: subprocess.Popen[str] | None = None
    _stopped: bool = False

    def start(self) -> Background:
        threading.Thread(target=self._run, name="cold-compiles", daemon=True).start()
        return self

    def _run(self) -> None:
        for job in self.compiles:
            with self._ready:
                if self._stopped:
                    return
                self._running = process = job.start()
            out, err = process.communicate()
            with self._ready:
                self._done[job.name] = subprocess.CompletedProcess(
                    job.argv, process.returncode, out, err
                )
                self._ready.notify_all()

    @property
    def model_cache(self) -> Path:
        return self.folder / MODELS

    def has(self, name: str) -> bool:
        return any(job.name == name for job in self.compiles)

    def result(self, name: str) -> tuple[subprocess.CompletedProcess[str], Compile]:
        job = next(job for job in self.compiles if job.name == name)
        with self._ready:
            self._ready.wait_for(lambda: name in self._done)
            return self._done[name], job

    def stop(self) -> None:
        """At the session's end: nothing left running, nothing left on disk."""
        with self._ready:
            self._stopped = True
            if self._running is not None and self._running.poll() is None:
                self._running.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def start(*, want_standard: bool, want_probe: bool) -> Background:
    """The compiles the session's selected tests need, on a tiny model in their own
    folder (``Background.model_cache``: the session's ``model_cache`` fixture then)."""
    from worker.tiny_sdxl import ensure_tiny_sdxl

    folder = Path(tempfile.mkdtemp(prefix="farm-cold-compiles-"))
    model = ensure_tiny_sdxl(folder / MODELS / "tiny-sdxl")
    compiles = []
    if want_standard:  # first: the integration tests need it before the unit tests
        compiles.append(standard(model, folder / "standard"))
    if want_probe:
        compiles.append(probe(model, folder / "probe", folder / "probe.npy"))
    return Background(folder, compiles).start()


def main() -> None:
    """``python -m tests.cold_compiles MODEL CACHE_DIR``: the standard tier, cold."""
    from tests.tiers import compile_standard_tier

    compile_standard_tier(Path(sys.argv[1]), Path(sys.argv[2]))


if __name__ == "__main__":
    main()
