"""A Dockerfile read into instructions and stages, and its pip commands picked out."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]  # ARGs declared before the first FROM, with their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def instructions(self, keyword: str) -> list[Instruction]:
        return [i for s in self.stages for i in s.all(keyword)]


def parse_dockerfile(text: str, path: Path) -> Dockerfile:
    """Instructions with line continuations joined and comment lines dropped."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    if buffer:
        raise ValueError(f"{path}: continuation at the end of the file")

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, rest = line.partition(" ")
        instruction = Instruction(keyword.upper(), rest.strip(), number)
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(_expand(words[0], args), name))
        elif not stages:
            if instruction.keyword != "ARG":
                raise ValueError(f"{path}:{number}: {instruction.keyword} before FROM")
            key, _, default = instruction.args.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(path, args, stages)


def _expand(word: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), word)


def shell_commands(run: Instruction) -> list[list[str]]:
    """The simple commands of a RUN line (split on && ; ||), each as argv."""
    if run.args.startswith("["):
        raise ValueError(f"line {run.line}: exec-form RUN is not expected here")
    commands = []
    for part in re.split(r"&&|\|\||;", run.args):
        argv = shlex.split(part)
        if argv:
            commands.append(argv)
    return commands


@dataclass
class PipCommand:
    action: str  # install | wheel
    requirements: list[Requirement]  # packages named on the command line
    local: list[str]  # paths: ".", wheels
    requirement_files: list[str]
    index_url: str | None
    no_deps: bool
    line: int


_OPTIONS_WITH_VALUE = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-w",
    "--wheel-dir",
    "-f",
    "--find-links",
    "-t",
    "--target",
}


def pip_commands(run: Instruction) -> list[PipCommand]:
    found = []
    for argv in shell_commands(run):
        words = argv[2:] if argv[1:3] == ["-m", "pip"] else argv
        if not words or words[0] not in ("pip", "pip3") or len(words) < 2:
            continue
        action, rest = words[1], words[2:]
        if action not in ("install", "wheel"):
            continue
        command = PipCommand(action, [], [], [], None, False, run.line)
        i = 0
        while i < len(rest):
            word = rest[i]
            option, has_value, value = word.partition("=")
            if option in _OPTIONS_WITH_VALUE:
                if not has_value:
                    i += 1
                    value = rest[i]
                if option in ("-r", "--requirement"):
                    command.requirement_files.append(value)
                elif option in ("-i", "--index-url"):
                    command.index_url = value
            elif word == "--no-deps":
                command.no_deps = True
            elif word.startswith("-"):
                pass  # a flag: --upgrade, --quiet, ...
            elif word.startswith((".", "/")) or word.endswith(".whl"):
                command.local.append(word)
            else:
                command.requirements.append(Requirement(word))
            i += 1
        found.append(command)
    return found
