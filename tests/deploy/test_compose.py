"""deploy/compose.yaml: valid Compose, and wired to things that exist."""

from __future__ import annotations

import copy
import re
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from models.infra.settings import DEFAULT_MODELS
from tests.deploy.surface import (
    API_PORT,
    BUILT_IMAGES,
    DEPLOY,
    ENV_EXAMPLE,
    METRICS_PORT,
    built_image,
    check_farm_command,
    image_problem,
    parse_farm_argv,
    unknown_farm_env,
)

COMPOSE = DEPLOY / "compose.yaml"
ONE_SHOT = {"migrate", "minio-bucket"}
VAR_RE = re.compile(r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}|\$(\w+)")


@cache
def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema, as vendored by check-jsonschema (Apache-2.0)."""
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema: dict[str, Any] = yaml.safe_load(text.read_text())
    return schema


def schema_errors(document: Any) -> list[str]:
    validator_class = jsonschema.validators.validator_for(compose_schema())
    validator = validator_class(compose_schema())
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def raw() -> Any:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution, for the forms this file uses."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        if m.group(2) == ":-":
            return env.get(name) or m.group(3)
        if m.group(2) == "-":
            return env.get(name, m.group(3))
        if name not in env:
            raise KeyError(f"${{{name}}} has no default and is not set")
        return env[name]

    return VAR_RE.sub(one, value)


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


@cache
def _resolved() -> dict[str, Any]:
    resolved: dict[str, Any] = interpolate(raw(), {})
    return resolved


def config() -> dict[str, Any]:
    """The file as Compose runs it with no .env: every variable at its default."""
    return copy.deepcopy(_resolved())


def services() -> dict[str, Any]:
    services: dict[str, Any] = config()["services"]
    return services


def farm_services() -> dict[str, Any]:
    return {n: s for n, s in services().items() if built_image(s.get("image", ""))}


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_validates_against_the_compose_specification() -> None:
    assert schema_errors(raw()) == []


def test_schema_check_rejects_a_broken_file() -> None:
    broken = raw()
    broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")
    broken["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"] = "all"
    errors = schema_errors(broken)
    assert any("helthcheck" in e for e in errors), errors
    assert any("devices" in e for e in errors), errors


def test_every_variable_has_a_default_equal_to_env_example() -> None:
    """Runs without .env; and .env.example, as shipped, changes nothing."""
    example = env_example()
    used = {m.group(1) or m.group(4) for m in VAR_RE.finditer(COMPOSE.read_text())} - {None}
    assert used, "no variables found: the check would be empty"
    assert interpolate(raw(), example) == config()
    assert used == set(example) - {"COMPOSE_PROFILES"}, "unused or undocumented variables"
    profiles = {p for s in services().values() for p in s.get("profiles", [])}
    assert set(example["COMPOSE_PROFILES"].split(",")) <= profiles


def test_farm_services_start_after_migrate() -> None:
    svc = services()
    migrate = svc["migrate"]
    assert migrate["command"] == ["farm", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart") == "no"
    for name, service in farm_services().items():
        if name == "migrate":
            continue
        depends = service.get("depends_on", {})
        assert depends.get("migrate", {}).get("condition") == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["pgbouncer"]["condition"] == "service_healthy", name
        assert depends["minio-bucket"]["condition"] == "service_completed_successfully", name
    assert svc["minio-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_commands_are_farm_subcommands() -> None:
    commands = {name: s["command"] for name, s in farm_services().items()}
    assert {c[1] for c in commands.values()} >= {"migrate", "api", "beat", "worker"}
    for name, argv in commands.items():
        assert check_farm_command(parse_farm_argv(argv, f"compose {name}")) == [], name


def test_images_are_built_here_or_well_known() -> None:
    for name, service in services().items():
        assert image_problem(service["image"]) is None, name
        if "build" in service:
            dockerfile = (COMPOSE.parent / service["build"]["context"]).resolve() / service[
                "build"
            ]["dockerfile"]
            built = built_image(service["image"])
            assert built and BUILT_IMAGES[built] == dockerfile, (name, dockerfile)
    assert services()["worker"]["image"].startswith("animagine-farm-worker:")
    for name in ("api", "beat", "migrate"):
        assert services()[name]["image"].startswith("animagine-farm-api:"), name


def test_long_running_services_have_healthchecks() -> None:
    for name, service in services().items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOT:
            assert service.get("restart") == "no", name
        elif name == "beat":
            # The image's own check probes the API port, which beat does not open.
            assert check == {"disable": True}
        else:
            assert check.get("test") and not check.get("disable"), name


def _healthcheck_port(service: dict[str, Any]) -> int:
    text = " ".join(service["healthcheck"]["test"])
    (port,) = re.findall(r"127\.0\.0\.1:(\d+)", text)
    return int(port)


def test_api_port_is_the_same_everywhere() -> None:
    api = services()["api"]
    argv = api["command"]
    assert int(argv[argv.index("--port") + 1]) == API_PORT
    assert _healthcheck_port(api) == API_PORT
    assert [p.rsplit(":", 1)[1] for p in api["ports"]] == [str(API_PORT)]


@pytest.mark.parametrize("name", ["worker", "worker-cpu"])
def test_workers(name: str) -> None:
    worker = services()[name]
    env = worker["environment"]
    assert int(env["FARM_METRICS_PORT"]) == METRICS_PORT == _healthcheck_port(worker)
    assert worker["expose"] == [str(METRICS_PORT)]
    assert f"model-cache:{env['FARM_MODEL_CACHE_DIR']}" in worker["volumes"]
    assert env["HF_HOME"].startswith(env["FARM_MODEL_CACHE_DIR"] + "/")
    model = worker["command"][worker["command"].index("--model") + 1]
    assert model in DEFAULT_MODELS, "compose leaves FARM_MODELS at its default"
    assert seconds(worker["stop_grace_period"]) >= (600 if name == "worker" else 60)


def test_gpu_worker_reserves_one_nvidia_gpu() -> None:
    worker = services()["worker"]
    assert worker["profiles"] == ["gpu"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert "--model" in worker["command"] and "animagine-xl-3.1" in worker["command"]


def test_cpu_worker_runs_the_tiny_model_without_a_gpu() -> None:
    worker = services()["worker-cpu"]
    assert worker["profiles"] == ["cpu"]
    assert worker["command"][-2:] == ["--model", "tiny-sdxl"]
    assert worker["environment"]["FARM_DEVICE"] == "cpu"
    assert "deploy" not in worker


def test_volumes_are_declared_and_mounted() -> None:
    cfg = config()
    declared = set(cfg["volumes"])
    assert declared == {"pgdata", "minio-data", "model-cache"}
    used = {v.split(":")[0] for s in cfg["services"].values() for v in s.get("volumes", [])}
    assert used == declared
    assert "pgdata:/var/lib/postgresql/data" in cfg["services"]["postgres"]["volumes"]
    minio = cfg["services"]["minio"]
    assert f"minio-data:{minio['command'][1]}" in minio["volumes"]


def test_farm_environment_points_at_the_services() -> None:
    svc = services()
    for name, service in farm_services().items():
        env = service["environment"]
        assert unknown_farm_env(k for k in env if k.startswith("FARM_")) == set(), name
        # The farm through PgBouncer in transaction mode; migrations straight to Postgres.
        db = urlsplit(env["FARM_DATABASE_URL"])
        assert (db.hostname, db.port, db.username) == ("pgbouncer", 5432, "farm"), name
        assert env["FARM_DB_TRANSACTION_POOLER"] == "1", name
        direct = urlsplit(env["FARM_MIGRATION_DATABASE_URL"])
        assert (direct.hostname, direct.port, direct.username) == ("postgres", 5432, "farm")
        bouncer = svc["pgbouncer"]["environment"]
        assert bouncer["POOL_MODE"] == "transaction"
        assert urlsplit(bouncer["DATABASE_URL"]).hostname == "postgres"
        for url in (db, direct, urlsplit(bouncer["DATABASE_URL"])):
            assert url.password == svc["postgres"]["environment"]["POSTGRES_PASSWORD"]
            assert url.path == "/" + svc["postgres"]["environment"]["POSTGRES_DB"]
        assert urlsplit(env["FARM_BROKER_URL"]).hostname == "redis", name
        s3 = urlsplit(env["FARM_S3_ENDPOINT_URL"])
        assert (s3.hostname, s3.port) == ("minio", 9000), name
        minio_env = svc["minio"]["environment"]
        assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"], name
        assert env["FARM_S3_BUCKET"] == svc["minio-bucket"]["environment"]["BUCKET"], name
