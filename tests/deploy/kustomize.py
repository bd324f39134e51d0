"""Render a kustomization offline: the subset of kustomize that deploy/k8s uses.

No kustomize binary or cluster is available to the tests, and no Python
package implements kustomize, so this renders the features our overlays use
and refuses every other kustomization field (a new feature in deploy/k8s makes
the tests fail here until it is supported, instead of being silently ignored).
Its output for deploy/k8s was compared with `kubectl kustomize` (kustomize
v5.5.0) when it was written: identical objects.

Supported: ``resources`` (files and directories), ``namespace``, ``images``
(``newName`` / ``newTag``), ``patches`` with a ``path`` (a strategic-merge
patch that names its target by kind and name). Patch semantics follow kustomize:
built-in kinds merge lists of containers, env, volumes and volume mounts by
their merge key and delete a field set to null; custom resources get a JSON
merge patch (RFC 7386: lists are replaced whole, null deletes).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}

# Strategic-merge keys of the built-in list fields our patches touch.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}

# Kinds that live outside any namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


class KustomizeError(ValueError):
    pass


def load_yaml_documents(path: Path) -> list[Resource]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
    return docs


def is_builtin(resource: Resource) -> bool:
    """Core and k8s.io API groups; anything else (keda.sh, ...) is a custom resource."""
    group = str(resource["apiVersion"]).rpartition("/")[0]
    return group == "" or group.endswith(".k8s.io") or "." not in group


def strategic_merge(base: Any, patch: Any, *, builtin: bool) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif builtin and key in MERGE_KEYS and isinstance(value, list):
            out[key] = _merge_list(out.get(key) or [], value, MERGE_KEYS[key])
        elif key in out:
            out[key] = strategic_merge(out[key], value, builtin=builtin)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_list(base: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    """Merge by key; items new to the list come first, as kustomize (kyaml) orders them."""
    merged = [copy.deepcopy(item) for item in base]
    added: list[Any] = []
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise KustomizeError(f"list item without merge key {merge_key!r}: {item!r}")
        index = next((i for i, b in enumerate(merged) if b.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            added.append(copy.deepcopy(item))
        else:
            merged[index] = strategic_merge(merged[index], item, builtin=True)
    return added + merged


def _pod_specs(resource: Resource) -> list[dict[str, Any]]:
    spec = resource.get("spec") or {}
    if resource["kind"] == "Pod":
        return [spec]
    template = (spec.get("jobTemplate", {}).get("spec", spec)).get("template")
    return [template["spec"]] if template else []


def _apply_images(resources: list[Resource], images: list[dict[str, str]]) -> None:
    for resource in resources:
        for pod in _pod_specs(resource):
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                name, sep, tag = str(container["image"]).partition(":")
                for image in images:
                    if image["name"] == name:
                        new_name = image.get("newName", name)
                        new_tag = image.get("newTag", tag if sep else "")
                        container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def _apply_patch(resources: list[Resource], patch: Resource, source: Path) -> None:
    kind, name = patch.get("kind"), patch.get("metadata", {}).get("name")
    targets = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    if len(targets) != 1:
        raise KustomizeError(f"{source}: patch targets {kind}/{name}, found {len(targets)}")
    target = targets[0]
    body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
    merged = strategic_merge(target, body, builtin=is_builtin(target))
    target.clear()
    target.update(merged)


def render(directory: Path) -> list[Resource]:
    """The resources ``kustomize build DIRECTORY`` would print (in no particular order)."""
    path = directory / "kustomization.yaml"
    config = yaml.safe_load(path.read_text())
    unknown = set(config) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields not supported by this renderer: {sorted(unknown)}")
    if config.get("kind") != "Kustomization":
        raise KustomizeError(f"{path}: kind is {config.get('kind')!r}")

    resources: list[Resource] = []
    for entry in config.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources.extend(render(target))
        elif target.is_file():
            resources.extend(load_yaml_documents(target))
        else:
            raise KustomizeError(f"{path}: resource {entry!r} does not exist")

    for patch_entry in config.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise KustomizeError(f"{path}: only `path` patches are supported: {patch_entry}")
        patch_file = directory / patch_entry["path"]
        for patch in load_yaml_documents(patch_file):
            _apply_patch(resources, patch, patch_file)

    namespace = config.get("namespace")
    if namespace:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = namespace

    _apply_images(resources, config.get("images", []))

    seen: set[tuple[str, str]] = set()
    for resource in resources:
        key = (resource["kind"], resource["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"{path}: {key[0]}/{key[1]} is defined twice")
        seen.add(key)
    return resources
