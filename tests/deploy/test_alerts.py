"""The alert rules (config/prometheus/alerts.yml): valid, unit-tested, and about real metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics
from tests.components.process import require_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
ALERTS = REPO_ROOT / "config" / "prometheus" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
METRIC_NAME = re.compile(r"\bregistry_gateway_[a-z_]+\b")
# The alert list: upstream error ratio, Vault stale credentials, rate-limit remaining
# low, readiness.
REQUIRED_ALERTS = {
    "RegistryGatewayUpstreamErrors",
    "RegistryGatewayVaultStaleCredentials",
    "RegistryGatewayRateLimitLow",
    "RegistryGatewayNotReady",
}


def gateway_samples() -> set[str]:
    """Every sample name the gateway's metric families can produce."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exposition = generate_latest(Metrics().registry).decode()
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in suffixes.get(family.type, ("",))
    }


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_promtool_check_rules_passes() -> None:
    """`promtool check rules` accepts the file and finds every rule."""
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_rule_unit_tests_pass(tmp_path: Path) -> None:
    """`promtool test rules`: each alert fires on its symptom, with its labels and text."""
    # The test file names its rules relative to itself; give it the repository's file.
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    """No alert goes untested: each name appears in alerts_test.yml."""
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert {rule["alert"] for rule in rules()} == tested


def test_required_alerts_exist() -> None:
    """Upstream errors, stale Vault credentials, low rate limit and readiness are covered."""
    assert {rule["alert"] for rule in rules()} >= REQUIRED_ALERTS


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_alert_is_actionable(rule: dict[str, Any]) -> None:
    """Each alert has a severity, a summary and a description that says what to do."""
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]
    assert len(rule["annotations"]["description"]) > 80


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_alert_uses_only_real_metric_names(rule: dict[str, Any]) -> None:
    """Every registry_gateway_* name in an expression is one the gateway exports."""
    names = set(METRIC_NAME.findall(rule["expr"]))
    assert names or 'up{job="registry-gateway"}' in rule["expr"]
    assert names <= gateway_samples(), names - gateway_samples()
