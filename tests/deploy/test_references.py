"""Names deploy/ and docs/DEPLOY.md use exist in the project: settings, commands, files."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.deploy.surface import (
    DEPLOY,
    DOCS,
    ENV_EXAMPLE,
    FARM_ENV_RE,
    REPO,
    check_farm_command,
    farm_commands_in_text,
    unknown_farm_env,
)


def deploy_texts() -> dict[Path, str]:
    paths = [p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return {p: p.read_text() for p in [*paths, ENV_EXAMPLE, DOCS]}


def docs_code() -> str:
    """The shell in docs/DEPLOY.md: fenced blocks and inline code spans."""
    text = DOCS.read_text()
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join(fenced + inline)


def test_every_farm_variable_is_a_setting() -> None:
    used = {
        (name, path.relative_to(REPO).as_posix())
        for path, text in deploy_texts().items()
        for name in FARM_ENV_RE.findall(text)
    }
    assert len(used) > 20, "the scan found almost nothing: is FARM_ENV_RE right?"
    unknown = sorted((n, p) for n, p in used if unknown_farm_env([n]))
    assert unknown == []


def test_variable_check_rejects_an_unknown_name() -> None:
    assert unknown_farm_env(["FARM_DATABASE_URL", "FARM_DATABSE_URL"]) == {"FARM_DATABSE_URL"}


def test_docs_commands_are_farm_subcommands() -> None:
    commands = farm_commands_in_text(docs_code(), "docs/DEPLOY.md")
    assert {c.path[0] for c in commands} >= {"api", "worker", "migrate", "keys", "submit"}
    problems = [p for c in commands for p in check_farm_command(c)]
    assert problems == []


def test_command_check_rejects_unknown_subcommands_and_options() -> None:
    text = (
        "farm keys create --tenant a\nfarm api --hots 0.0.0.0\nkubectl -n farm create ns\n"
        "kubectl exec deploy/farm-api -- farm serve\ndocker compose exec -T api farm keys"
    )
    problems = [p for c in farm_commands_in_text(text, "t") for p in check_farm_command(c)]
    assert len(problems) == 3, problems
    assert any("--hots" in p for p in problems)
    assert any("farm serve" in p for p in problems)
    assert any("needs a subcommand" in p for p in problems)


def test_docs_paths_exist() -> None:
    # deploy/... files, not kubectl's deploy/NAME (every Deployment is named farm-*).
    pattern = r"(?<![\w/-])(deploy/(?!farm-)[\w./*-]+\w|\.env\.example)"
    paths = set(re.findall(pattern, DOCS.read_text()))
    assert len(paths) > 10
    missing = sorted(p for p in paths if not list(REPO.glob(p.rstrip("/"))))
    assert missing == []


def test_docs_explain_every_alert() -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "farm-alerts.yaml").read_text())["groups"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    documented = set(re.findall(r"(?m)^\| (Farm\w+) \|", DOCS.read_text()))
    assert documented == alerts
