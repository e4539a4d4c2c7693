"""A real Prometheus scrapes the gateway after real pulls; PromQL returns exact values.

The scenario (tests/ops/scenario.py) makes known requests in two batches and a skopeo pull,
waiting for a fresh scrape after each; these tests compare the snapshots with what was sent.
The PromQL for each name is in ``scenario.queries``.
"""

from __future__ import annotations

import math
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.components.process import require_binary
from tests.ops.scenario import SECOND_BATCH_BLOB_GETS, Scenario

CONTRACT_FAMILIES = {
    "registry_gateway_requests": "counter",
    "registry_gateway_request_duration_seconds": "histogram",
    "registry_gateway_inflight_requests": "gauge",
    "registry_gateway_upstream_requests": "counter",
    "registry_gateway_upstream_request_duration_seconds": "histogram",
    "registry_gateway_bytes_sent": "counter",
    "registry_gateway_upstream_tokens": "counter",
    "registry_gateway_vault_requests": "counter",
    "registry_gateway_vault_request_duration_seconds": "histogram",
    "registry_gateway_credentials_stale": "counter",
    "registry_gateway_client_auth": "counter",
    "registry_gateway_upstream_ratelimit_remaining": "gauge",
}
ROUTES = {"base", "manifest", "blob", "tags", "referrers", "token", "other"}
ALLOWED_LABELS = {"route", "method", "code", "upstream", "operation", "result", "kind"}
# Per sample name: the labels beyond ALLOWED_LABELS that the exposition format adds itself.
FORMAT_LABELS = {"le"}


def first(observed: Scenario) -> dict[str, float | None]:
    return observed.snapshots["first"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("base_get_200", 1),
        ("base_post_405", 1),
        # 3 from the default upstream, 1 via ?ns= the hub, 1 via ?ns= the Vault-backed one.
        ("manifest_get_200", 5),
        ("manifest_head_200", 1),
        ("manifest_get_404", 2),
        ("blob_get_200", 3),
        ("manifest_duration_count", 8),
    ],
)
def test_caller_requests_counted_exactly(observed: Scenario, name: str, expected: int) -> None:
    """requests_total and request_duration_seconds_count equal the requests made, per label set."""
    assert first(observed)[name] == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # The first manifest GET is challenged (401), then retried with a fetched token.
        ("upstream_manifest_401", 1),
        ("upstream_manifest_200", 4),
        ("upstream_manifest_404", 2),
        ("upstream_blob_200", 3),
        ("upstream_manifest_latency_count", 7),
        ("hub_manifest_200", 1),
        ("vaulted_manifest_200", 1),
    ],
)
def test_upstream_requests_counted_exactly(observed: Scenario, name: str, expected: int) -> None:
    """upstream_requests_total and upstream latency count every request sent upstream."""
    assert first(observed)[name] == expected


def test_token_cache_outcomes(observed: Scenario) -> None:
    """One token fetched on the first challenge; every later request of the pull used the cache."""
    snapshot = first(observed)
    assert snapshot["tokens_fetched"] == 1
    # 2 more manifest GETs + 1 HEAD + 3 blobs + 2 missing-tag GETs, all preemptively authorized.
    assert snapshot["tokens_cached"] == 8


def test_bytes_sent_are_the_bytes_callers_received(observed: Scenario) -> None:
    """bytes_sent_total per upstream and route equals the body bytes the client read."""
    snapshot = first(observed)
    assert snapshot["bytes_blob"] == sum(observed.blob_bytes.values())
    assert snapshot["bytes_manifest"] == observed.manifest_bytes


def test_ratelimit_remaining_from_docker_hub_header(observed: Scenario) -> None:
    """Docker Hub's `ratelimit-remaining: 76;w=21600` sets upstream_ratelimit_remaining to 76."""
    assert first(observed)["ratelimit_remaining"] == 76


def test_vault_reads_counted(observed: Scenario) -> None:
    """The Vault-backed upstream's secret was read once, successfully, and timed."""
    snapshot = first(observed)
    assert snapshot["vault_read_ok"] == 1
    assert snapshot["vault_read_duration_count"] == 1
    assert snapshot["vault_errors"] == 0


def test_gauges_when_idle(observed: Scenario) -> None:
    """Between batches nothing is in flight, the gateway is ready and nobody was refused."""
    snapshot = first(observed)
    assert snapshot["inflight"] == 0
    assert snapshot["ready"] == 1
    assert snapshot["connections_rejected"] == 0


def test_latency_quantile_is_computable(observed: Scenario) -> None:
    """histogram_quantile over the request histogram yields a finite, positive latency."""
    p50 = first(observed)["manifest_p50_finite"]
    assert p50 is not None and math.isfinite(p50) and 0 < p50 < 60


def test_second_batch_increments_exactly(observed: Scenario) -> None:
    """Five more blob GETs between two scrapes add exactly 5 requests and 5 blobs' bytes."""
    before, after = observed.snapshots["first"], observed.snapshots["second"]
    size = observed.blob_bytes[observed.image.blob_digests[-1]]
    assert before["blob_get_200"] is not None and after["blob_get_200"] is not None
    assert after["blob_get_200"] - before["blob_get_200"] == SECOND_BATCH_BLOB_GETS
    assert before["bytes_blob"] is not None and after["bytes_blob"] is not None
    assert after["bytes_blob"] - before["bytes_blob"] == SECOND_BATCH_BLOB_GETS * size
    assert after["manifest_get_200"] == before["manifest_get_200"]


def test_skopeo_pull_is_visible(observed: Scenario) -> None:
    """A skopeo copy through the gateway shows as more manifest and blob requests."""
    second, pulled = observed.snapshots["second"], observed.snapshots["pulled"]
    assert pulled["manifest_get_200"] == (second["manifest_get_200"] or 0) + 1
    assert (pulled["blob_get_200"] or 0) >= (second["blob_get_200"] or 0) + 1


def test_prometheus_agrees_with_the_exposition(observed: Scenario) -> None:
    """Every counter and gauge sample the gateway exposes is the value Prometheus stored."""
    checked = 0
    for family in text_string_to_metric_families(observed.exposition):
        if not family.name.startswith("registry_gateway_"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created") or sample.name == "registry_gateway_connections":
                continue  # creation times, and a gauge that moves with each scrape's connection
            matchers = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            expr = f"{sample.name}{{{matchers}}}"
            assert observed.prometheus.value(expr) == sample.value, expr
            checked += 1
    assert checked > 50


def test_every_contract_family_is_known_to_prometheus(observed: Scenario) -> None:
    """Prometheus's metadata API lists each CONTRACT.md family with its type, samples or not."""
    metadata = observed.prometheus.api("metadata")
    for name, kind in CONTRACT_FAMILIES.items():
        assert name in metadata or f"{name}_total" in metadata, name
        entry = metadata.get(name) or metadata[f"{name}_total"]
        assert entry[0]["type"] == kind, (name, entry)
        assert entry[0]["help"], name


def test_labels_are_bounded(observed: Scenario) -> None:
    """Only CONTRACT label names appear; routes and upstreams come from fixed, known sets."""
    upstreams = {observed.registry, observed.vaulted, observed.hub}
    series = observed.prometheus.api("series", **{"match[]": '{__name__=~"registry_gateway_.+"}'})
    assert series
    for labels in series:
        own = set(labels) - {"__name__", "job", "instance"}
        assert own <= ALLOWED_LABELS | FORMAT_LABELS, labels
        assert labels.get("route", "base") in ROUTES, labels
        assert labels.get("upstream", observed.registry) in upstreams, labels
        assert labels.get("method", "GET") in {"GET", "HEAD", "POST", "other"}, labels


def test_alert_rules_evaluate_on_live_data(observed: Scenario) -> None:
    """The repository's alert rules load into Prometheus, evaluate without error, none firing."""
    groups = observed.prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 9
    for rule in rules:
        assert rule["health"] == "ok", rule
        assert rule["state"] == "inactive", rule


def test_exposition_passes_promtool_check_metrics(observed: Scenario) -> None:
    """`promtool check metrics` finds no problem in the gateway's exposition."""
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=observed.exposition,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout
