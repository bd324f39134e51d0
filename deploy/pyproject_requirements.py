"""Print pyproject's ``[project].dependencies``, one requirement a line.

Both Dockerfiles install the farm's dependencies from this output, so the
images can only ever install what pyproject declares (the test suite runs this
same script: tests/deploy/test_dockerfiles.py). Standard library only: it runs
before anything is installed.

    python pyproject_requirements.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as f:
        data = tomllib.load(f)
    deps = data["project"]["dependencies"]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise SystemExit(f"{pyproject}: [project].dependencies is not a list of strings")
    return deps


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} PYPROJECT", file=sys.stderr)
        return 2
    for line in requirements(Path(argv[1])):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
