"""The two images install exactly what pyproject declares, and run as they should.

Design: neither Dockerfile lists dependencies. Both run
deploy/pyproject_requirements.py on the copied pyproject.toml and ``pip install
-r`` its output, then install the project's wheel with ``--no-deps``. A
dependency added to pyproject therefore reaches both images with no edit, and
the only package a Dockerfile may name itself is one pyproject pins the same way
(torch, which the api image takes from the CPU index). The checks below fail on
a Dockerfile that names any other package, pins torch differently, installs
requirements from anywhere else, or forgets a package directory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.dockerfile import Dockerfile, parse_dockerfile, pip_commands, shell_commands
from tests.deploy.surface import (
    API_PORT,
    BUILT_IMAGES,
    METRICS_PORT,
    REPO,
    check_farm_command,
    parse_farm_argv,
)

PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())
DEPENDENCIES: list[str] = PYPROJECT["project"]["dependencies"]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
REQUIREMENTS_SCRIPT = "deploy/pyproject_requirements.py"
TOOLING = {"pip", "setuptools", "wheel"}  # may be upgraded without pyproject's say


def _python_version() -> str:
    """The oldest Python pyproject allows (``>=3.11,<3.12`` -> ``3.11``)."""
    match = re.search(r">=\s*(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert match, "pyproject's requires-python has no lower bound"
    return match.group(1)


PYTHON_VERSION = _python_version()
# Base images: Python of pyproject's requires-python, and NVIDIA's CUDA images.
BASE_IMAGES = {
    "python": rf"{re.escape(PYTHON_VERSION)}-slim(-\w+)?",
    "nvidia/cuda": r"\d+\.\d+\.\d+-(base|runtime|cudnn-runtime)-ubuntu\d\d\.\d\d",
}


def load(name: str) -> Dockerfile:
    path = BUILT_IMAGES[name]
    return parse_dockerfile(path.read_text(), path)


def dependency_problems(dockerfile: Dockerfile, dependencies: list[str]) -> list[str]:
    """Everything that would let the image's packages drift from pyproject's."""
    pins = {canonicalize_name(r.name): r for r in map(Requirement, dependencies)}
    problems: list[str] = []
    generated = _generated_requirement_files(dockerfile)
    installs_requirements = False
    installs_project = False
    for run in dockerfile.instructions("RUN"):
        for pip in pip_commands(run):
            where = f"{dockerfile.path.name}:{pip.line}"
            for req in pip.requirements:
                name = canonicalize_name(req.name)
                if name in TOOLING:
                    continue
                pinned = pins.get(name)
                if pinned is None:
                    problems.append(f"{where}: installs {req}, which pyproject does not declare")
                elif str(pinned.specifier) != str(req.specifier) or pinned.extras != req.extras:
                    problems.append(f"{where}: installs {req}, pyproject says {pinned}")
            for file in pip.requirement_files:
                if file in generated:
                    installs_requirements = True
                else:
                    problems.append(f"{where}: -r {file} is not generated from pyproject")
            if pip.action == "install" and pip.local:
                installs_project = True
                if not pip.no_deps:
                    problems.append(f"{where}: the project is installed without --no-deps")
    if not installs_requirements:
        problems.append(f"{dockerfile.path.name}: never installs pyproject's dependencies")
    if not installs_project:
        problems.append(f"{dockerfile.path.name}: never installs the project itself")
    return problems


def _generated_requirement_files(dockerfile: Dockerfile) -> set[str]:
    """Files written by `python .../pyproject_requirements.py .../pyproject.toml > FILE`."""
    files = set()
    for run in dockerfile.instructions("RUN"):
        for argv in shell_commands(run):
            if (
                len(argv) == 5
                and argv[0] in ("python", "python3")
                and argv[1].endswith(Path(REQUIREMENTS_SCRIPT).name)
                and argv[2].endswith("pyproject.toml")
                and argv[3] == ">"
            ):
                files.add(argv[4])
    return files


@pytest.mark.parametrize("image", sorted(BUILT_IMAGES))
def test_installs_exactly_pyprojects_dependencies(image: str) -> None:
    assert dependency_problems(load(image), DEPENDENCIES) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("RUN pip install sentry-sdk", "pyproject does not declare"),
        ("RUN pip install torch==2.12.0", "pyproject says torch==2.13.0"),
        ("RUN pip install -r requirements.txt", "not generated from pyproject"),
        ("RUN pip install /tmp/wheels/*.whl", "without --no-deps"),
    ],
)
def test_dependency_check_catches_drift(line: str, expected: str) -> None:
    """The check above fails on each way a Dockerfile can drift from pyproject."""
    path = BUILT_IMAGES["animagine-farm-api"]
    text = path.read_text().replace("\nUSER ", f"\n{line}\nUSER ", 1)
    assert line in text
    problems = dependency_problems(parse_dockerfile(text, path), DEPENDENCIES)
    assert any(expected in p for p in problems), problems


def test_requirements_script_prints_pyprojects_dependencies() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / REQUIREMENTS_SCRIPT), str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    now = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out.splitlines() == now


@pytest.mark.parametrize("image", sorted(BUILT_IMAGES))
def test_copies_every_package_and_the_build_inputs(image: str) -> None:
    dockerfile = load(image)
    includes = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in includes}
    needed = packages | {"pyproject.toml", PYPROJECT["project"]["readme"], REQUIREMENTS_SCRIPT}
    copied = set(_copy_sources(dockerfile))
    assert needed <= copied, f"not copied: {sorted(needed - copied)}"
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"


@pytest.mark.parametrize("image", sorted(BUILT_IMAGES))
def test_dockerignore_lets_the_copied_files_through(image: str) -> None:
    """BuildKit's <Dockerfile>.dockerignore: an allow-list that must admit every COPY."""
    path = BUILT_IMAGES[image].with_name(BUILT_IMAGES[image].name + ".dockerignore")
    patterns = [
        line.strip() for line in path.read_text().splitlines() if line.strip()[:1] not in ("", "#")
    ]
    assert patterns[0] == "*", "the ignore file should start by excluding everything"
    allowed = [p[1:] for p in patterns if p.startswith("!")]
    for source in _copy_sources(load(image)):
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
    assert ".venv" not in allowed


def _copy_sources(dockerfile: Dockerfile) -> list[str]:
    sources: list[str] = []
    for copy in dockerfile.instructions("COPY"):
        words = copy.args.split()
        if any(w.startswith("--from") for w in words):
            continue
        sources.extend(w.rstrip("/") for w in words[:-1] if not w.startswith("--"))
    return sources


def test_api_image_takes_torch_from_the_cpu_index_before_the_rest() -> None:
    dockerfile = load("animagine-farm-api")
    pips = [p for r in dockerfile.final.all("RUN") for p in pip_commands(r)]
    torch_at = next(i for i, p in enumerate(pips) if any(r.name == "torch" for r in p.requirements))
    deps_at = next(i for i, p in enumerate(pips) if p.requirement_files)
    assert pips[torch_at].index_url == CPU_INDEX
    assert torch_at < deps_at, "torch must be installed before the other dependencies"


def test_worker_image_gets_the_cuda_build_of_torch() -> None:
    """No CPU index anywhere: pyproject's torch pin then resolves to the CUDA wheel on PyPI."""
    dockerfile = load("animagine-farm-worker")
    assert CPU_INDEX not in dockerfile.path.read_text()
    assert not any(
        r.name == "torch"
        for run in dockerfile.instructions("RUN")
        for p in pip_commands(run)
        for r in p.requirements
    )
    assert "nvidia/cuda" in dockerfile.final.base
    installs = " ".join(run.args for run in dockerfile.final.all("RUN"))
    assert f"python{PYTHON_VERSION}" in installs.split(), f"the worker needs {PYTHON_VERSION}"


@pytest.mark.parametrize("image", sorted(BUILT_IMAGES))
def test_base_images_are_known(image: str) -> None:
    for stage in load(image).stages:
        repo, _, tag = stage.base.partition(":")
        assert repo in BASE_IMAGES, stage.base
        assert re.fullmatch(BASE_IMAGES[repo], tag), stage.base


@pytest.mark.parametrize("image", sorted(BUILT_IMAGES))
def test_runs_as_a_non_root_user(image: str) -> None:
    users = load(image).final.all("USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].args.split(":")[0] not in ("root", "0")


@pytest.mark.parametrize(
    ("image", "port", "path"),
    [
        ("animagine-farm-api", API_PORT, "/healthz"),
        ("animagine-farm-worker", METRICS_PORT, "/metrics"),
    ],
)
def test_healthcheck_and_exposed_port(image: str, port: int, path: str) -> None:
    final = load(image).final
    (healthcheck,) = final.all("HEALTHCHECK")
    assert path in healthcheck.args
    assert f"127.0.0.1:{port}" in healthcheck.args or (
        f"'{port}'" in healthcheck.args and "FARM_METRICS_PORT" in healthcheck.args
    )
    exposed = {int(p.split("/")[0]) for e in final.all("EXPOSE") for p in e.args.split()}
    assert exposed == {port}


@pytest.mark.parametrize("image", sorted(BUILT_IMAGES))
def test_default_command_is_a_farm_subcommand(image: str) -> None:
    (cmd,) = load(image).final.all("CMD")
    argv = json.loads(cmd.args)
    assert check_farm_command(parse_farm_argv(argv, f"{image} CMD")) == []


def test_worker_keeps_models_on_a_volume() -> None:
    final = load("animagine-farm-worker").final
    env = " ".join(e.args for e in final.all("ENV"))
    assert "FARM_MODEL_CACHE_DIR=/models" in env.split()
    assert "HF_HOME=/models/hf" in env.split()
    assert f"FARM_METRICS_PORT={METRICS_PORT}" in env.split()
    assert any("/models" in v.args for v in final.all("VOLUME"))
