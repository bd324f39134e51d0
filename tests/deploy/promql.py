"""PromQL checks: a query parses, and uses the farm's metrics as they are defined."""

from __future__ import annotations

import re
from typing import Any

import promql_parser

# The metrics the farm exports: name -> its labels (besides Prometheus' own).
FARM_METRICS: dict[str, set[str]] = {
    "farm_queue_depth": {"model"},
    "farm_cells": {"status"},
    "farm_images_total": {"model", "bucket"},
    "farm_render_seconds_bucket": {"bucket", "le"},
    "farm_upload_seconds_bucket": {"le"},
    "farm_gpu_memory_bytes": {"device"},
    "farm_job_latency_seconds_bucket": {"le"},
    "farm_jobs_total": {"status"},
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job", "pod", "namespace", "container"}
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}
GAUGE_FUNCTIONS = {"delta", "idelta", "deriv", "predict_linear"}

# Grafana's variables, replaced by something of the same type before parsing.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$model": ".*",
}


def kind_of(metric: str) -> str:
    if metric.endswith("_total"):
        return "counter"
    if metric.endswith("_bucket"):
        return "histogram"
    return "gauge"


def substitute_grafana_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    leftover = re.search(r"\$\w+", expr)
    if leftover:
        raise ValueError(f"unknown Grafana variable {leftover.group(0)} in {expr!r}")
    return expr


def check_expr(expr: str, known: dict[str, set[str]]) -> tuple[list[str], set[str]]:
    """(problems, farm metric names used) for one PromQL expression."""
    try:
        tree = promql_parser.parse(expr)
    except ValueError as exc:
        return [f"{expr!r} does not parse: {exc}"], set()

    problems: list[str] = []
    used: set[str] = set()
    labels_in_scope: set[str] = set(TARGET_LABELS)
    by_labels: list[tuple[str, list[str]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or ""
            if name not in known:
                problems.append(f"unknown metric {name!r} in {expr!r}")
                return
            used.add(name)
            labels_in_scope.update(known[name])
            for matcher in node.matchers.matchers:
                if matcher.name not in known[name] | TARGET_LABELS:
                    problems.append(f"{name} has no label {matcher.name!r} ({expr!r})")
        elif isinstance(node, promql_parser.Call):
            function = node.func.name
            for metric in _metrics_under(node):
                kind = kind_of(metric)
                if function in COUNTER_FUNCTIONS and kind == "gauge":
                    problems.append(f"{function}() of the gauge {metric} ({expr!r})")
                if function in GAUGE_FUNCTIONS and kind != "gauge":
                    problems.append(f"{function}() of the {kind} {metric} ({expr!r})")
            if function == "histogram_quantile":
                inner = node.args[1]
                if not (
                    isinstance(inner, promql_parser.AggregateExpr)
                    and inner.modifier
                    and inner.modifier.type == promql_parser.AggModifierType.By
                    and "le" in inner.modifier.labels
                ):
                    problems.append(f"histogram_quantile without `by (le)`: {expr!r}")
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier:
            by_labels.append((str(node.op), list(node.modifier.labels)))

    def pre_visit(node: Any) -> None:
        visit(node)

    promql_parser.walk(tree, pre_visit=pre_visit)
    for op, labels in by_labels:
        for label in labels:
            if label not in labels_in_scope:
                problems.append(f"{op} by {label!r}: no metric here has it ({expr!r})")
    return problems, used


def _metrics_under(node: Any) -> list[str]:
    names: list[str] = []

    def collect(child: Any) -> None:
        if isinstance(child, promql_parser.VectorSelector) and child.name:
            names.append(child.name)

    promql_parser.walk(node, pre_visit=collect)
    return names
