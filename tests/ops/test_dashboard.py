"""The Grafana dashboard: well-formed, and every query is valid PromQL over real metric names.

The names are checked against the exposition of a gateway that has served real pulls, and
each query is run, with Grafana's variables filled in, by the real Prometheus of the observed
scenario (tests/ops/scenario.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.scenario import Scenario

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "registry-gateway.json"
# What Grafana substitutes at query time, with values a real dashboard would send.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$upstream": ".*",
    "$route": ".*",
}
METRIC_NAME = re.compile(r"\bregistry_gateway_[a-z_]+\b")
# The panels an operator needs at a glance (issue: requests and errors by upstream, bytes/s,
# latency percentiles, token cache hit ratio, Vault health, rate-limit remaining).
REQUIRED_METRICS = {
    "registry_gateway_upstream_requests_total",
    "registry_gateway_bytes_sent_total",
    "registry_gateway_request_duration_seconds_bucket",
    "registry_gateway_upstream_tokens_total",
    "registry_gateway_vault_requests_total",
    "registry_gateway_credentials_stale_total",
    "registry_gateway_upstream_ratelimit_remaining",
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def substituted(expr: str) -> str:
    # Longest names first: $__rate_interval before $__range and $__interval.
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def exposed_sample_names(exposition: str) -> set[str]:
    """Every sample name a family can produce: labelled families expose HELP/TYPE only."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",),
        }.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_dashboard_identity_and_layout() -> None:
    """A fixed uid and title, unique panel ids, and panels inside Grafana's 24-column grid."""
    board = dashboard()
    assert board["uid"] == "registry-gateway"
    assert board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0, panel["title"]


def test_panels_use_the_datasource_variable() -> None:
    """Every panel and query use the `datasource` variable, so the dashboard imports anywhere."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["refId"]


def test_only_defined_variables_are_used() -> None:
    """Every $variable in a query is a dashboard variable or a Grafana built-in we substitute."""
    defined = {f"${v['name']}" for v in dashboard()["templating"]["list"]}
    for expr in expressions():
        for variable in re.findall(r"\$\w+", expr):
            assert variable in defined or variable in GRAFANA_VARIABLES, (variable, expr)


def test_dashboard_covers_the_operator_questions() -> None:
    """Requests and errors by upstream, bytes, latency, token cache, Vault and rate limits."""
    used = {name for expr in expressions() for name in METRIC_NAME.findall(expr)}
    assert used >= REQUIRED_METRICS


def test_metric_names_exist_in_the_exposition(observed: Scenario) -> None:
    """Every metric a query names is one the gateway exposes after real pulls."""
    exposed = exposed_sample_names(observed.exposition)
    upstream_variable = next(
        v for v in dashboard()["templating"]["list"] if v["name"] == "upstream"
    )
    queries = [*expressions(), upstream_variable["definition"]]
    for expr in queries:
        for name in METRIC_NAME.findall(expr):
            assert name in exposed, (name, expr)


@pytest.mark.parametrize("expr", expressions())
def test_query_runs_in_prometheus(observed: Scenario, expr: str) -> None:
    """Prometheus parses and evaluates the query (with Grafana's variables filled in)."""
    observed.prometheus.query(substituted(expr))


def test_queries_about_served_traffic_return_data(observed: Scenario) -> None:
    """Queries over requests, bytes and latency return series after the observed pulls."""
    for fragment in ("requests_total", "bytes_sent_total", "request_duration_seconds_bucket"):
        exprs = [e for e in expressions() if fragment in e and 'code=~"5' not in e]
        assert exprs, fragment
        with_data = [e for e in exprs if observed.prometheus.query(substituted(e))]
        assert with_data, f"no {fragment} query returned data"
