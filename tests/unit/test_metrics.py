"""gateway.metrics: labelled children reused, and body bytes counted as they are added."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from gateway import metrics as metrics_module
from gateway.metrics import Metrics, SentBytes


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_labelled_family_reuses_one_child_per_label_set() -> None:
    """The same label values give the same child; increments land in the exposition."""
    m = Metrics()
    first = m.requests.labels("manifest", "GET", "200")
    assert m.requests.labels("manifest", "GET", "200") is first
    first.inc()
    m.requests.labels("manifest", "GET", "200").inc(2)
    m.requests.labels("blob", "GET", "200").inc()
    assert sample(m, "registry_gateway_requests_total",
                  route="manifest", method="GET", code="200") == 3  # fmt: skip
    assert sample(m, "registry_gateway_requests_total",
                  route="blob", method="GET", code="200") == 1  # fmt: skip


def test_labelled_family_stops_remembering_past_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cap a new label set still counts; it is just looked up each time."""
    m = Metrics()
    monkeypatch.setattr(metrics_module, "_MAX_CHILDREN", 1)
    m.upstream_tokens.labels("a", "cached").inc()
    m.upstream_tokens.labels("b", "cached").inc()
    m.upstream_tokens.labels("b", "cached").inc()
    assert sample(m, "registry_gateway_upstream_tokens_total", upstream="b", result="cached") == 2
    assert len(m.upstream_tokens._children) == 1


def test_sent_bytes_reach_the_counter_as_they_are_added() -> None:
    """Each addition is in bytes_sent_total at once, before the body is complete."""
    m = Metrics()
    sent = SentBytes(m.bytes_sent.labels("docker.io", "blob"))
    sent.add(1000)
    assert (
        sample(m, "registry_gateway_bytes_sent_total", upstream="docker.io", route="blob") == 1000
    )
    sent.add(24)
    sent.add(0)
    assert sent.total == 1024
    assert b'registry_gateway_bytes_sent_total{route="blob",upstream="docker.io"} 1024.0' in (
        generate_latest(m.registry)
    )


def test_sent_bytes_without_a_counter_only_totals() -> None:
    """A SentBytes with no counter (nothing to attribute) still totals for the request line."""
    sent = SentBytes()
    sent.add(5)
    sent.add(7)
    assert sent.total == 12
