"""deploy/k8s overlays: every reference resolves, and the farm is wired as it runs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.k8s import (
    EXTERNAL_SECRET,
    OVERLAYS,
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
