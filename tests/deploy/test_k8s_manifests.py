"""deploy/k8s renders, and every rendered object is valid for its schema, offline."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.k8s import BASE, K8S, K8S_VERSIONS, OVERLAYS, get, rendered
from tests.deploy.keda import keda_errors
from tests.deploy.kustomize import KustomizeError, is_builtin, render

TARGETS = {"base": BASE, **OVERLAYS}


def k8s_errors(resource: dict[str, Any], version: str) -> list[str]:
    """Validation against the Kubernetes OpenAPI schemas (strict: no unknown fields)."""
    if not is_builtin(resource):
        return keda_errors(resource)
    if version == "latest":
        version = kubernetes_validate.latest_version()
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(map(str, exc.path))
        return [f"{resource['kind']}/{resource['metadata']['name']}: {path}: {exc.message}"]
    return []


def test_every_manifest_file_is_used() -> None:
    """A YAML file that no kustomization names is never deployed (or tested)."""
    used: set[Path] = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        config = yaml.safe_load(kustomization.read_text())
        entries = config.get("resources", []) + [p["path"] for p in config.get("patches", [])]
        used |= {(kustomization.parent / e).resolve() for e in entries}
    files = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert files - used == set()


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_objects_validate(target: str, version: str) -> None:
    resources = rendered(TARGETS[target])
    assert len(resources) >= 9
    errors = [e for r in resources for e in k8s_errors(r, version)]
    assert errors == []


@pytest.mark.parametrize(
    ("kind", "name", "mutate", "expected"),
    [
        ("Deployment", "farm-worker", lambda r: r["spec"].update(replica=1), "replica"),
        (
            "Deployment",
            "farm-api",
            lambda r: r["spec"]["template"]["spec"]["containers"][0].update(ports=[{"port": 1}]),
            "containerPort",
        ),
        ("ScaledObject", "farm-worker", lambda r: r["spec"].pop("triggers"), "triggers"),
        (
            "ScaledObject",
            "farm-worker",
            lambda r: r["spec"]["triggers"][0]["metadata"].update(listLength=4),
            "listLength",
        ),
        ("ScaledObject", "farm-worker", lambda r: r["spec"].update(minReplicas=0), "minReplicas"),
    ],
)
def test_validation_rejects_broken_objects(
    kind: str, name: str, mutate: Any, expected: str
) -> None:
    resource = copy.deepcopy(get(rendered(OVERLAYS["prod"]), kind, name))
    mutate(resource)
    errors = k8s_errors(resource, K8S_VERSIONS[0])
    assert any(expected in e for e in errors), errors


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../base]\ncommonLabels: {a: b}\n"
    )
    with pytest.raises(KustomizeError, match="commonLabels"):
        render(tmp_path)


def test_renderer_applies_patches_like_kustomize() -> None:
    """The dev overlay's worker patch: env merged by name, null deletes, lists replaced."""
    prod = get(rendered(OVERLAYS["prod"]), "Deployment", "farm-worker")
    dev = get(rendered(OVERLAYS["dev"]), "Deployment", "farm-worker")
    (prod_c,), (dev_c,) = (
        prod["spec"]["template"]["spec"]["containers"],
        dev["spec"]["template"]["spec"]["containers"],
    )
    assert [e["name"] for e in dev_c["env"]] == ["FARM_DEVICE", "FARM_METRICS_PORT"]
    assert "nvidia.com/gpu" in prod_c["resources"]["limits"]
    assert "nvidia.com/gpu" not in dev_c["resources"]["limits"]
    assert "tolerations" not in dev["spec"]["template"]["spec"]
    assert dev_c["volumeMounts"] == prod_c["volumeMounts"]
    assert dev_c["image"] == "animagine-farm-api:dev"
    assert prod_c["image"] == "registry.example.com/animagine-farm-worker:0.1.0"
    assert {r["metadata"].get("namespace") for r in rendered(OVERLAYS["dev"])} == {
        None,
        "farm-dev",
    }
