"""JSON schemas for the KEDA custom resources deploy/k8s uses.

kubernetes-validate only knows built-in kinds. These follow KEDA v2's CRDs
(keda.sh/v1alpha1) for the fields we use, closed with additionalProperties so
that a misspelt field fails here rather than being dropped by the API server.
Trigger metadata is map[string]string in the CRD: a bare number is rejected on
apply, so it is rejected here too.
"""

from __future__ import annotations

from typing import Any

import jsonschema

_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "additionalProperties": False,
}

_REDIS_METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["listName"],
    "anyOf": [
        {"required": ["address"]},
        {"required": ["addressFromEnv"]},
        {"required": ["host", "port"]},
    ],
    "properties": {
        "address": {"type": "string", "pattern": r"^[a-z0-9.-]+:\d+$"},
        "listName": {"type": "string", "minLength": 1},
        "listLength": {"type": "string", "pattern": r"^[1-9]\d*$"},
        "activationListLength": {"type": "string", "pattern": r"^\d+$"},
        "databaseIndex": {"type": "string", "pattern": r"^\d+$"},
        "enableTLS": {"enum": ["true", "false"]},
    },
    "additionalProperties": {"type": "string"},
}

SCALED_OBJECT: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
                "pollingInterval": _COUNT,
                "cooldownPeriod": _COUNT,
                "initialCooldownPeriod": _COUNT,
                "idleReplicaCount": _COUNT,
                "minReplicaCount": _COUNT,
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                            "additionalProperties": False,
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                    "additionalProperties": False,
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": _STRING_MAP,
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                                "additionalProperties": False,
                            },
                        },
                        "if": {"properties": {"type": {"const": "redis"}}},
                        "then": {"properties": {"metadata": _REDIS_METADATA}},
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

_SECRET_REF: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["parameter", "name", "key"],
        "properties": {
            "parameter": {"type": "string"},
            "name": {"type": "string"},
            "key": {"type": "string"},
        },
        "additionalProperties": False,
    },
}

TRIGGER_AUTHENTICATION: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "minProperties": 1,
            "properties": {
                "secretTargetRef": _SECRET_REF,
                "configMapTargetRef": _SECRET_REF,
                "env": {"type": "array"},
                "podIdentity": {"type": "object"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

SCHEMAS = {"ScaledObject": SCALED_OBJECT, "TriggerAuthentication": TRIGGER_AUTHENTICATION}


def keda_errors(resource: dict[str, Any]) -> list[str]:
    schema = SCHEMAS.get(resource.get("kind", ""))
    if schema is None:
        return [f"no schema for custom resource {resource.get('apiVersion')}/{resource['kind']}"]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(resource)
    ]
