"""Import the kit here as the GPU machine would: with only its packages and the carried
wheels, so that a missing module fails on this machine instead of in paid device time.

The first device run of the kit (2026-11-27) died in its imports: `cryptography` was
neither on the machine nor carried. A subprocess of this environment imports the kit's
entry points and refuses each third-party top-level module whose distribution is
neither on the machine nor among the wheels, when the project or a carried package
imports it. A refused module raises ImportError as an absent one would, so an optional
import (celery's greenlet) falls back as it will there, and only a hard import fails.
What the machine's own packages import is theirs: their versions there differ from
this environment's (huggingface_hub here imports httpx2, the machine's does not).

    python -m bench.gpu_kit.import_check            # also run by prepare
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

ENTRY_POINTS = ("bench.gpu_kit.run", "bench.gpu_kit.farm_stage", "bench.gpu_kit.report")

# Runs in the subprocess: json.loads(argv[1]) is the allowed distributions, argv[2]
# the carried ones, argv[3:] the modules to import. Stdlib and the project's packages
# map to no third-party distribution and stay allowed.
_CHILD = """
import importlib, importlib.abc, importlib.metadata, json, sys
from packaging.utils import canonicalize_name as canonical
allowed = set(json.loads(sys.argv[1]))
carried = set(json.loads(sys.argv[2]))
project = {"api", "beat", "bench", "farm", "migrations", "models", "worker", "tests"}
owners = importlib.metadata.packages_distributions()
refused = set()

def importer():
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(
        ("importlib", "_frozen_importlib")
    ):
        frame = frame.f_back
    top = (frame.f_globals.get("__name__", "") if frame else "").partition(".")[0]
    return top, {canonical(d) for d in owners.get(top, ())}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        dists = {canonical(d) for d in owners.get(top, ())}
        if top in project or not dists or dists & allowed:
            return None
        by, by_dists = importer()
        if by not in project and not by_dists & carried:
            return None  # a machine package's import: its version there decides
        refused.add(top)
        raise ModuleNotFoundError(f"No module named {top!r} (not on the GPU machine)")

sys.meta_path.insert(0, Refuse())
for module in sys.argv[3:]:
    importlib.import_module(module)
print(json.dumps(sorted(refused)))
"""


def carried_distributions(wheels: Path) -> set[str]:
    return {canonicalize_name(w.name.split("-")[0]) for w in wheels.glob("*.whl")}


def check_imports(
    machine: set[str], carried: set[str], modules: tuple[str, ...] = ENTRY_POINTS
) -> tuple[bool, str]:
    """(True, the optional modules refused) or (False, the traceback's last lines)."""
    allowed = {canonicalize_name(name) for name in machine} | carried
    arguments = [json.dumps(sorted(allowed)), json.dumps(sorted(carried)), *modules]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *arguments],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    if done.returncode != 0:
        return False, "\n".join(done.stderr.strip().splitlines()[-4:])
    refused = json.loads(done.stdout.strip().splitlines()[-1])
    return True, ", ".join(refused) or "none"


def main() -> int:
    from bench.gpu_kit.prepare import KIT, machine_packages  # prepare imports this module

    ok, detail = check_imports(set(machine_packages()), carried_distributions(KIT / "wheels"))
    if ok:
        print(f"the kit imports with the machine's packages and the wheels (absent: {detail})")
        return 0
    print(f"the kit does not import on the GPU machine:\n{detail}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
