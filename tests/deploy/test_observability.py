"""The Grafana dashboard and the alert rules query the farm's metrics correctly."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy.promql import FARM_METRICS, check_expr, substitute_grafana_variables
from tests.deploy.surface import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "farm-dashboard.json"
ALERTS = DEPLOY / "prometheus" / "farm-alerts.yaml"
# Beyond the farm's own: Prometheus' `up` and kube-state-metrics' Deployment counts.
ALERT_METRICS = FARM_METRICS | {
    "up": set(),
    "kube_deployment_status_replicas_available": {"deployment"},
    "kube_deployment_spec_replicas": {"deployment"},
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_dashboard_shape() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_panels_use_the_datasource_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_queries_use_the_farm_metrics_correctly() -> None:
    problems: list[str] = []
    used: set[str] = set()
    queries = [t["expr"] for p in panels() for t in p["targets"]]
    model_query = next(v for v in dashboard()["templating"]["list"] if v["name"] == "model")
    match = re.fullmatch(r"label_values\((\w+), (\w+)\)", model_query["definition"])
    assert match, model_query["definition"]
    metric, label = match.groups()
    queries.append(f"group by ({label}) ({metric})")
    for expr in queries:
        found, metrics = check_expr(substitute_grafana_variables(expr), FARM_METRICS)
        problems += found
        used |= metrics
    assert problems == []
    assert used == set(FARM_METRICS), f"no panel shows {sorted(set(FARM_METRICS) - used)}"


def test_panel_units_fit_their_metrics() -> None:
    for panel in panels():
        exprs = " ".join(t["expr"] for t in panel["targets"])
        unit = panel["fieldConfig"]["defaults"]["unit"]
        if "histogram_quantile" in exprs and "_seconds_bucket" in exprs:
            assert unit == "s", panel["title"]
        if "_bytes" in exprs:
            assert unit == "bytes", panel["title"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("rate(farm_queue_depth[5m])", "rate() of the gauge"),
        ("sum(farm_images_totl)", "unknown metric"),
        ('farm_cells{model="x"}', "has no label 'model'"),
        ("histogram_quantile(0.9, sum(rate(farm_upload_seconds_bucket[5m])))", "by (le)"),
        ("sum by (bucket) (farm_queue_depth)", "no metric here has it"),
        ("sum(rate(farm_images_total[5m])", "does not parse"),
    ],
)
def test_query_check_rejects_mistakes(expr: str, expected: str) -> None:
    problems, _ = check_expr(expr, FARM_METRICS)
    assert any(expected in p for p in problems), problems


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    problems: list[str] = []
    used: set[str] = set()
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        found, metrics = check_expr(rule["expr"], ALERT_METRICS)
        problems += found
        used |= metrics
    assert problems == []
    # What docs/DEPLOY.md promises to alert on.
    assert {
        "farm_queue_depth",
        "farm_cells",
        "farm_render_seconds_bucket",
        "farm_gpu_memory_bytes",
        "kube_deployment_status_replicas_available",
    } <= used
