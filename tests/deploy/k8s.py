"""The rendered overlays of deploy/k8s, and ways to look into them."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

from tests.deploy.kustomize import Resource, is_builtin, render
from tests.deploy.surface import DEPLOY

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
# Kubernetes versions the manifests must be valid for: the oldest we support and
# the newest kubernetes-validate knows.
K8S_VERSIONS = ["1.30", "latest"]

# The Secret prod expects the operator to create (docs/DEPLOY.md says how).
EXTERNAL_SECRET = "farm-secrets"

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


@cache
def _render(directory: Path) -> tuple[Resource, ...]:
    return tuple(render(directory))


def rendered(directory: Path) -> list[Resource]:
    return copy.deepcopy(list(_render(directory)))


def get(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def named(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def builtin(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if is_builtin(r)]


def workloads(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if r["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: Resource) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Resource) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    found: list[dict[str, Any]] = spec.get("initContainers", []) + spec["containers"]
    return found


def container(workload: Resource, name: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [
        c for c in pod_spec(workload)["containers"] if c["name"] == name
    ]
    assert len(matches) == 1, f"{workload['metadata']['name']}: {len(matches)} containers {name}"
    return matches[0]


def configmap_data(resources: list[Resource], name: str) -> dict[str, str]:
    data: dict[str, str] = get(resources, "ConfigMap", name).get("data", {})
    return data


def secret_keys(resources: list[Resource], name: str) -> set[str] | None:
    """Keys of a rendered Secret; None when the Secret is not in the render."""
    secret = named(resources, "Secret").get(name)
    if secret is None:
        return None
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))


def container_env(resources: list[Resource], c: dict[str, Any]) -> dict[str, str]:
    """The container's environment as far as the render knows it.

    ConfigMap values, literal values and a rendered Secret's values are known;
    the external Secret's keys are not (the caller adds them), and a single key
    taken from a ConfigMap or Secret maps to "<from ...>".
    """
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmap_data(resources, source["configMapRef"]["name"]))
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            secret = named(resources, "Secret").get(name)
            if secret is not None:
                env.update(secret.get("stringData", {}))
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = "<from " + next(iter(item["valueFrom"])) + ">"
    return env


def argv_option(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]
