"""The production alerts and the Grafana dashboard name only metrics the services export:
a renamed metric fails here instead of leaving an alert that can never fire."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from pixelrelay_dispatcher.breaker import State

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "k8s" / "overlays" / "production" / "monitoring"
RULES = MONITORING / "prometheusrule.yaml"
DASHBOARD = ROOT / "deploy/k8s/overlays/production/monitoring/pixelrelay-dashboard.json"
SOURCES = (ROOT / "libs", ROOT / "services")

ALERTS = {
    "PixelRelayTaskFailureRate",
    "PixelRelayBreakerOpen",
    "PixelRelayJetStreamLag",
    "PixelRelayHoldsOverdue",
    "PixelRelayLedgerCheckFailing",
    "PixelRelayServiceDown",
}
# Written by Prometheus itself for every target, not by our code.
SCRAPE_SERIES = {"up"}
# Label values, label_replace arguments and regexes are quoted: not metric names.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_METRIC = re.compile(r"\b(?:pixelrelay_\w+|up)\b")


def _series(kind: str, name: str) -> set[str]:
    """What prometheus_client exposes for one metric: a Counter drops ``_total`` from its
    name and writes ``<base>_total``; a Histogram never writes its bare name."""
    if kind == "Counter":
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "Histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "Summary":
        return {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
    return {name}


def defined_series(roots: Iterable[Path]) -> set[str]:
    """Every series a ``Counter/Gauge/Histogram/Summary("name", ...)`` under ``roots``
    exposes; read with ``ast`` so the metric's type decides which suffixes exist."""
    found: set[str] = set()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                names = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "name")]
                for arg in names:
                    if kind in {"Counter", "Gauge", "Histogram", "Summary"} and (
                        isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                    ):
                        found |= _series(kind, arg.value)
    return found


def unknown_metrics(exprs: Iterable[str], defined: set[str]) -> set[str]:
    used = {name for expr in exprs for name in _METRIC.findall(_QUOTED.sub("", expr))}
    return used - defined - SCRAPE_SERIES


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    assert doc["kind"] == "PrometheusRule"
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _exprs(node: object) -> list[str]:
    """Every ``expr`` in the dashboard, panels inside collapsed rows included."""
    if isinstance(node, dict):
        own = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return own + [e for value in node.values() for e in _exprs(value)]
    if isinstance(node, list):
        return [e for value in node for e in _exprs(value)]
    return []


def test_every_alert_says_how_bad_what_and_where_to_look() -> None:
    alerts = {rule["alert"]: rule for rule in _rules() if "alert" in rule}
    assert set(alerts) == ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        assert notes["runbook"] == "docs/operations.md#alerts", name
    assert alerts["PixelRelayLedgerCheckFailing"]["labels"]["severity"] == "critical"


def test_breaker_alert_fires_on_the_open_state() -> None:
    """The gauge holds ``State``'s value; renumbering it must not silently mute the alert."""
    rule = next(r for r in _rules() if r.get("alert") == "PixelRelayBreakerOpen")
    assert re.search(rf"pixelrelay_channel_breaker_state\b.*==\s*{int(State.OPEN)}\b", rule["expr"])


def test_alerts_use_only_exported_metrics() -> None:
    exprs = [rule["expr"] for rule in _rules()]
    assert unknown_metrics(exprs, defined_series(SOURCES)) == set()


def test_dashboard_uses_only_exported_metrics() -> None:
    exprs = _exprs(_dashboard())
    assert len(exprs) >= 15
    assert unknown_metrics(exprs, defined_series(SOURCES)) == set()


def test_dashboard_queries_the_chosen_datasource() -> None:
    """Imported into any Grafana: no panel pinned to a datasource uid of ours."""
    dashboard = _dashboard()
    assert (dashboard["uid"], dashboard["schemaVersion"]) == ("pixelrelay", 39)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_a_renamed_metric_is_caught(tmp_path: Path) -> None:
    (tmp_path / "metrics.py").write_text(
        "from prometheus_client import Counter, Histogram\n"
        'WIDGETS = Counter("pixelrelay_widgets_total", "Widgets", ["kind"])\n'
        'LATENCY = Histogram(\n    "pixelrelay_widget_seconds", "Widget time"\n)\n'
    )
    defined = defined_series([tmp_path])
    fine = [
        'sum by (kind) (rate(pixelrelay_widgets_total{kind="a"}[5m]))',
        "histogram_quantile(0.99, sum by (le) (rate(pixelrelay_widget_seconds_bucket[5m])))",
        'up{job="pixelrelay_gateway"} == 0',
    ]
    assert unknown_metrics(fine, defined) == set()
    wrong = ["rate(pixelrelay_widget_total[5m])", "pixelrelay_widget_seconds > 1"]
    assert unknown_metrics(wrong, defined) == {
        "pixelrelay_widget_total",
        "pixelrelay_widget_seconds",
    }
