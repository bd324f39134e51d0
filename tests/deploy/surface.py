"""What deploy/ may refer to: the farm's CLI, its settings, its images and ports.

Everything here is read from the project itself (the typer app, the Settings
class, pyproject) except the short lists of names that deploy/ needs before the
code has them: each such name must still be missing from the code, so the list
cannot go stale (a test fails the day the name lands, asking to drop it here).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import typer.main

from farm.cli import app
from models.infra.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCS = REPO / "docs" / "DEPLOY.md"
ENV_EXAMPLE = REPO / ".env.example"

API_PORT = 8000
METRICS_PORT = 9100

# Images deploy/ builds: name -> Dockerfile.
BUILT_IMAGES = {
    "animagine-farm-api": DEPLOY / "Dockerfile.api",
    "animagine-farm-worker": DEPLOY / "Dockerfile.worker",
}

# Well-known upstream images deploy/ may run (repository -> allowed tag pattern).
UPSTREAM_IMAGES = {
    "postgres": r"16(\.\d+)*",
    "redis": r"7(\.\d+)*",
    "minio/minio": r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ",
    "minio/mc": r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ",
    "edoburu/pgbouncer": r"v1\.\d+\.\d+(-p\d+)?",
}

FARM_ENV_RE = re.compile(r"\bFARM_[A-Z0-9_]+\b")


@dataclass(frozen=True)
class FarmCommand:
    """`farm SUB [SUB2] --opt ...` as written somewhere in deploy/."""

    path: tuple[str, ...]
    options: tuple[str, ...]
    where: str


@cache
def cli_group() -> Any:
    """The click command behind `farm` (typer's, with its own vendored click types)."""
    group = typer.main.get_command(app)
    assert isinstance(getattr(group, "commands", None), dict)
    return group


def _is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def subcommands() -> set[str]:
    return set(cli_group().commands)


def resolve_command(argv: list[str]) -> tuple[tuple[str, ...], Any]:
    """Walk `farm` subcommand groups; (path, command) or (path, None) if unknown."""
    command = cli_group()
    path: list[str] = []
    for word in argv:
        if word.startswith("-") or not _is_group(command):
            break
        sub = command.commands.get(word)
        path.append(word)
        if sub is None:
            return tuple(path), None
        command = sub
    return tuple(path), command


def parse_farm_argv(argv: list[str], where: str) -> FarmCommand:
    if not argv or argv[0] != "farm":
        raise ValueError(f"{where}: not a farm command: {argv}")
    path, _ = resolve_command(argv[1:])
    options = tuple(w.split("=", 1)[0] for w in argv[1:] if w.startswith("--"))
    return FarmCommand(path, options, where)


# Where a `farm` command starts in shell text: a line, after ; && | ( or a
# backtick, after `--` (kubectl exec ... -- farm), or after `exec SERVICE` /
# `run [--flags] SERVICE` (docker compose). Not `kubectl -n farm ...`.
_COMMAND_START = r"(?:^|[;&|(`]\s*|\s--\s+|\b(?:exec|run)\s+(?:-\S+\s+)*[\w.-]+\s+)"
_FARM_COMMAND_RE = re.compile(_COMMAND_START + r"(farm(?: +[^\s;&|)`#]+)+)", re.M)


def farm_commands_in_text(text: str, where: str) -> list[FarmCommand]:
    """`farm ...` invocations in shell text (docs' code blocks and code spans)."""
    return [
        parse_farm_argv(shlex.split(m.group(1)), where) for m in _FARM_COMMAND_RE.finditer(text)
    ]


def check_farm_command(cmd: FarmCommand) -> list[str]:
    """Problems with one invocation: unknown subcommand or option."""
    path, command = resolve_command(list(cmd.path))
    if command is None:
        return [f"{cmd.where}: `farm {' '.join(path)}` is not a farm subcommand"]
    if _is_group(command):
        return [f"{cmd.where}: `farm {' '.join(path)}` needs a subcommand"]
    known = {opt for param in command.params for opt in param.opts if opt.startswith("--")}
    known |= {opt for param in command.params for opt in getattr(param, "secondary_opts", [])} | {
        "--help"
    }
    return [
        f"{cmd.where}: `farm {' '.join(path)}` has no option {opt} (it has {sorted(known)})"
        for opt in cmd.options
        if opt not in known
    ]


def settings_env_names() -> set[str]:
    return {f"FARM_{name.upper()}" for name in Settings.model_fields}


def unknown_farm_env(names: Iterable[str]) -> set[str]:
    return set(names) - settings_env_names()


def split_image(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; the tag is "" when there is none."""
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return (name[:colon], name[colon + 1 :]) if colon > slash else (name, "")


def built_image(image: str) -> str | None:
    """The name of the deploy/ image ``image`` refers to, whatever its registry and tag."""
    base = split_image(image)[0].rsplit("/", 1)[-1]
    return base if base in BUILT_IMAGES else None


def image_problem(image: str) -> str | None:
    """None if ``image`` is built from deploy/ or an allowed, pinned upstream image."""
    if built_image(image):
        return None
    repo, tag = split_image(image)
    pattern = UPSTREAM_IMAGES.get(repo)
    if pattern is None:
        return f"{image}: neither built from deploy/ nor a known upstream image"
    if not re.fullmatch(pattern, tag):
        return f"{image}: tag {tag!r} is not pinned as expected ({pattern})"
    return None
