"""deploy/k8s overlays: the farm's API, worker, KEDA scaler and PgBouncer reach the services,
ports and secrets they need, and the docs name every key prod reads from its Secret."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from models.infra.queue import queue_name
from tests.deploy.k8s import (
    BASE,
    EXTERNAL_SECRET,
    OVERLAYS,
    argv_option,
    configmap_data,
    container,
    container_env,
    get,
    named,
    pod_spec,
    rendered,
)
from tests.deploy.surface import API_PORT, DOCS, METRICS_PORT, unknown_farm_env
from tests.deploy.test_k8s_wiring import farm_containers, overlay, resources_of


@overlay
def test_the_farm_has_its_services(name: str) -> None:
    """Without a broker URL the API would render in-process; without a database, SQLite."""
    resources = resources_of(name)
    needed = {"FARM_DATABASE_URL", "FARM_BROKER_URL", "FARM_SECRET_KEY"}
    needed |= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for workload_name, c in farm_containers(resources):
        env = set(container_env(resources, c))
        if name == "prod":
            env |= documented_secret_keys()
        assert needed <= env, (workload_name, sorted(needed - env))
    config = configmap_data(resources, "farm-config")
    models = json.loads(config["FARM_MODELS"])
    assert config["FARM_MODEL"] in models
    worker = container(get(resources, "Deployment", "farm-worker"), "worker")
    assert argv_option(worker["command"], "--model") in models
    if name == "dev":
        assert urlsplit(config["FARM_S3_ENDPOINT_URL"]).hostname in named(resources, "Service")
        secret = get(resources, "Secret", "farm-secrets")["stringData"]
        for key in ("FARM_DATABASE_URL", "FARM_BROKER_URL"):
            host = urlsplit(secret[key]).hostname
            assert host in named(resources, "Service"), (key, host)
    else:
        assert "FARM_S3_ENDPOINT_URL" not in config, "prod uses AWS S3 unless told otherwise"


def documented_secret_keys() -> set[str]:
    """The keys docs/DEPLOY.md tells the operator to put in the prod Secret."""
    text = DOCS.read_text()
    start = text.index("<!-- farm-secrets -->")
    block = text[start : text.index("```", text.index("```", start) + 3)]
    return set(re.findall(r"(?m)^([A-Z][A-Z0-9_]*)=", block))


def test_docs_name_every_key_prod_reads_from_the_secret() -> None:
    resources = resources_of("prod")
    keys = documented_secret_keys()
    auth = get(resources, "TriggerAuthentication", "farm-redis")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == EXTERNAL_SECRET and ref["key"] in keys
    for _, c in farm_containers(resources):
        for item in c.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            assert ref is None or ref["key"] in keys
    assert unknown_farm_env(k for k in keys if k.startswith("FARM_")) == set()


@overlay
def test_api(name: str) -> None:
    resources = resources_of(name)
    deployment = get(resources, "Deployment", "farm-api")
    api = container(deployment, "api")
    assert int(argv_option(api["command"], "--port")) == API_PORT
    assert api["ports"] == [{"name": "http", "containerPort": API_PORT}]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(API_PORT)
    service = get(resources, "Service", "farm-api")
    assert service["spec"]["ports"][0]["port"] == API_PORT
    assert get(resources, "Deployment", "farm-beat")["spec"]["replicas"] == 1
    job = get(resources, "Job", "farm-migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


@overlay
def test_worker(name: str) -> None:
    resources = resources_of(name)
    deployment = get(resources, "Deployment", "farm-worker")
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    worker = container(deployment, "worker")
    env = container_env(resources, worker)
    assert int(env["FARM_METRICS_PORT"]) == METRICS_PORT
    assert worker["ports"] == [{"name": "metrics", "containerPort": METRICS_PORT}]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    assert mounts[env["FARM_MODEL_CACHE_DIR"]] == "model-cache"
    assert env["HF_HOME"].startswith(env["FARM_MODEL_CACHE_DIR"] + "/")
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    if name == "prod":
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert grace >= 600, "a worker finishes its shard on SIGTERM"
        assert get(resources, "PersistentVolumeClaim", "farm-model-cache")["spec"][
            "accessModes"
        ] == ["ReadWriteMany"]
    else:
        assert env["FARM_DEVICE"] == "cpu"
        assert grace >= 60


@pytest.mark.parametrize("name", ["base", *sorted(OVERLAYS)])
def test_keda_scales_the_worker_on_its_models_queue(name: str) -> None:
    """The overlays replace the trigger list whole, so the base is checked too."""
    resources = rendered(BASE) if name == "base" else resources_of(name)
    scaled = get(resources, "ScaledObject", "farm-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "farm-worker"
    assert scaled["minReplicaCount"] == 0
    assert scaled["maxReplicaCount"] >= 1
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    worker = container(get(resources, "Deployment", "farm-worker"), "worker")
    model = argv_option(worker["command"], "--model")
    assert trigger["metadata"]["listName"] == queue_name(model)
    if "authenticationRef" in trigger:
        get(resources, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    host, port = trigger["metadata"]["address"].rsplit(":", 1)
    if name == "dev":
        # KEDA runs in its own namespace: the address is the Service's full name.
        (namespace,) = named(resources, "Namespace")
        service, _, rest = host.partition(".")
        assert rest == f"{namespace}.svc.cluster.local"
        assert int(port) in {p["port"] for p in get(resources, "Service", service)["spec"]["ports"]}
        broker = urlsplit(get(resources, "Secret", "farm-secrets")["stringData"]["FARM_BROKER_URL"])
        assert (broker.hostname, broker.port) == (service, int(port))
        assert broker.path.strip("/") == trigger["metadata"]["databaseIndex"]


@overlay
def test_the_farm_reaches_postgres_through_pgbouncer(name: str) -> None:
    """Transaction pooling in front of Postgres; migrations go to Postgres itself."""
    resources = resources_of(name)
    bouncer = container(get(resources, "Deployment", "farm-pgbouncer"), "pgbouncer")
    env = {e["name"]: e for e in bouncer["env"]}
    assert env["POOL_MODE"]["value"] == "transaction"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == (
        "FARM_MIGRATION_DATABASE_URL"
    )
    assert configmap_data(resources, "farm-config")["FARM_DB_TRANSACTION_POOLER"] == "1"
    get(resources, "Service", "farm-pgbouncer")
    if name == "dev":
        secret = get(resources, "Secret", "farm-secrets")["stringData"]
        assert urlsplit(secret["FARM_DATABASE_URL"]).hostname == "farm-pgbouncer"
        assert urlsplit(secret["FARM_MIGRATION_DATABASE_URL"]).hostname == "postgres"
    else:
        assert "FARM_MIGRATION_DATABASE_URL" in documented_secret_keys()
