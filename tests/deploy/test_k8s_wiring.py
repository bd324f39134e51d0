"""deploy/k8s overlays: every reference resolves, and the farm is wired as it runs."""

from __future__ import annotations

import json
import re
from typing import Any
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
    containers,
    get,
    named,
    pod_spec,
    rendered,
    secret_keys,
    workloads,
)
from tests.deploy.surface import (
    API_PORT,
    DOCS,
    METRICS_PORT,
    built_image,
    check_farm_command,
    image_problem,
    parse_farm_argv,
    unknown_farm_env,
)

overlay = pytest.mark.parametrize("name", sorted(OVERLAYS))
FARM_COMPONENTS = {"farm-api": "api", "farm-beat": "beat", "farm-worker": "worker"}


def resources_of(name: str) -> list[dict[str, Any]]:
    return rendered(OVERLAYS[name])


def farm_containers(resources: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (w["metadata"]["name"], c)
        for w in workloads(resources)
        for c in containers(w)
        if built_image(c["image"])
    ]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@overlay
def test_one_namespace_holds_everything(name: str) -> None:
    resources = resources_of(name)
    (namespace,) = named(resources, "Namespace")
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"} == {
        namespace
    }


@overlay
def test_references_resolve(name: str) -> None:
    resources = resources_of(name)
    configmaps, secrets = named(resources, "ConfigMap"), named(resources, "Secret")
    claims = named(resources, "PersistentVolumeClaim")
    external = {EXTERNAL_SECRET} if name == "prod" else set()
    for workload in workloads(resources):
        for c in containers(workload):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in set(secrets) | external
            for item in c.get("env", []):
                ref = item.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    key = ref["configMapKeyRef"]
                    assert key["key"] in configmap_data(resources, key["name"])
                if "secretKeyRef" in ref:
                    key = ref["secretKeyRef"]
                    keys = secret_keys(resources, key["name"])
                    if keys is None:
                        assert key["name"] in external, key
                    else:
                        assert key["key"] in keys, key
        for volume in pod_spec(workload).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        mounts = {m["name"] for c in containers(workload) for m in c.get("volumeMounts", [])}
        assert mounts <= {v["name"] for v in pod_spec(workload).get("volumes", [])}


@overlay
def test_selectors_match_pods(name: str) -> None:
    resources = resources_of(name)
    pods = {
        w["metadata"]["name"]: w["spec"]["template"].get("metadata", {}).get("labels", {})
        for w in workloads(resources)
    }
    for deployment in named(resources, "Deployment").values():
        labels = pods[deployment["metadata"]["name"]]
        assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    for service in named(resources, "Service").values():
        matched = [w for w, labels in pods.items() if selects(service["spec"]["selector"], labels)]
        assert len(matched) == 1, (service["metadata"]["name"], matched)
        workload = get(resources, "Deployment", matched[0])
        ports = {p.get("name") for c in containers(workload) for p in c.get("ports", [])} | {
            p["containerPort"] for c in containers(workload) for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)
    budgets = named(resources, "PodDisruptionBudget")
    assert set(budgets) == {"farm-api", "farm-worker"}
    for budget in budgets.values():
        selector = budget["spec"]["selector"]["matchLabels"]
        matched = [w for w, labels in pods.items() if selects(selector, labels)]
        assert matched == [budget["metadata"]["name"]]


@overlay
def test_probes_use_declared_ports(name: str) -> None:
    for workload in workloads(resources_of(name)):
        for c in containers(workload):
            ports = {p.get("name") for p in c.get("ports", [])} | {
                p["containerPort"] for p in c.get("ports", [])
            }
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                http = c.get(probe, {}).get("httpGet")
                if http:
                    assert http["port"] in ports, (workload["metadata"]["name"], probe)


@overlay
def test_farm_containers(name: str) -> None:
    resources = resources_of(name)
    commands = set()
    for workload_name, c in farm_containers(resources):
        where = f"{name} {workload_name}"
        assert check_farm_command(parse_farm_argv(c["command"], where)) == []
        commands.add(c["command"][1])
        env = container_env(resources, c)
        assert unknown_farm_env(k for k in env if k.startswith("FARM_")) == set(), where
        requests = c["resources"]["requests"]
        assert {"cpu", "memory"} <= set(requests), where
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
    assert commands == {"api", "beat", "migrate", "worker"}
    for workload in workloads(resources):
        if any(built_image(c["image"]) for c in containers(workload)):
            assert pod_spec(workload)["securityContext"]["runAsNonRoot"] is True


@overlay
def test_images(name: str) -> None:
    resources = resources_of(name)
    for workload in workloads(resources):
        for c in containers(workload):
            assert image_problem(c["image"]) is None
            assert ":" in c["image"].rsplit("/", 1)[-1], f"{c['image']}: untagged"
    for deployment in ("farm-api", "farm-beat"):
        (c,) = pod_spec(get(resources, "Deployment", deployment))["containers"]
        assert built_image(c["image"]) == "animagine-farm-api", deployment
    job = get(resources, "Job", "farm-migrate")
    assert built_image(containers(job)[0]["image"]) == "animagine-farm-api"
    worker = container(get(resources, "Deployment", "farm-worker"), "worker")
    expected = "animagine-farm-api" if name == "dev" else "animagine-farm-worker"
    assert built_image(worker["image"]) == expected


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
