"""Prometheus metrics on the app's own registry; names and labels as README "Metrics" lists them.

No label ever holds a repository, tag, digest, user or secret.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ROUTES = ("base", "manifest", "blob", "tags", "referrers", "token", "other")
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# aiohttp accepts any token as a method; a label must not take whatever a caller sends.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The request method as a bounded label value: a known method, else ``other``."""
    return method if method in METHODS else "other"


_MAX_CHILDREN = 4096


class Labelled:
    """A labelled metric family whose children are looked up once, then reused.

    prometheus_client's ``labels()`` validates and locks on every call; the hot paths call it
    several times per request with the same few label sets. Label values here are bounded by
    design (routes, methods, status codes, configured upstreams); past ``_MAX_CHILDREN``
    combinations lookups just stop being remembered.
    """

    __slots__ = ("_children", "family")

    def __init__(self, family: Any) -> None:
        self.family = family
        self._children: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self.family.labels(*values)
            if len(self._children) < _MAX_CHILDREN:
                self._children[values] = child
        return child


class SentBytes:
    """Body bytes written to one caller, counted as they are written.

    ``total`` is the request line's ``bytes``; each addition also goes to
    ``registry_gateway_bytes_sent_total`` at once, so a scrape right after a download includes
    it. The socket-to-socket relay adds from its writer thread (the only writer at that time;
    prometheus_client counters are thread-safe).
    """

    __slots__ = ("_counter", "total")

    def __init__(self, counter: Any = None) -> None:
        self.total = 0
        self._counter = counter  # a labelled bytes_sent child, or None when nothing is counted

    def add(self, count: int) -> None:
        self.total += count
        if self._counter is not None and count:
            self._counter.inc(count)


class Metrics:
    """Every metric family the gateway exports, created once per app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Labelled(Counter(
            "registry_gateway_requests_total", "Requests answered by the gateway.",
            ["route", "method", "code"], registry=r,
        ))  # fmt: skip
        self.request_duration = Labelled(Histogram(
            "registry_gateway_request_duration_seconds",
            "Time from request to the end of the response.", ["route"],
            buckets=_LATENCY, registry=r,
        ))  # fmt: skip
        self.inflight = Gauge(
            "registry_gateway_inflight_requests", "Requests being served now.", registry=r
        )
        self.upstream_requests = Labelled(Counter(
            "registry_gateway_upstream_requests_total", "Requests sent to upstream registries.",
            ["upstream", "route", "code"], registry=r,
        ))  # fmt: skip
        self.upstream_duration = Labelled(Histogram(
            "registry_gateway_upstream_request_duration_seconds",
            "Time to upstream response headers.", ["upstream", "route"],
            buckets=_LATENCY, registry=r,
        ))  # fmt: skip
        self.bytes_sent = Labelled(Counter(
            "registry_gateway_bytes_sent_total", "Body bytes relayed to callers.",
            ["upstream", "route"], registry=r,
        ))  # fmt: skip
        self.upstream_tokens = Labelled(Counter(
            "registry_gateway_upstream_tokens_total", "Upstream bearer token lookups.",
            ["upstream", "result"], registry=r,
        ))  # fmt: skip
        self.vault_requests = Labelled(Counter(
            "registry_gateway_vault_requests_total", "Calls to Vault/OpenBao.",
            ["operation", "result"], registry=r,
        ))  # fmt: skip
        self.vault_duration = Labelled(Histogram(
            "registry_gateway_vault_request_duration_seconds", "Duration of Vault calls.",
            ["operation"], buckets=_LATENCY, registry=r,
        ))  # fmt: skip
        self.credentials_stale = Labelled(Counter(
            "registry_gateway_credentials_stale_total",
            "Times a stale credential was served because Vault was unreachable.",
            ["upstream"], registry=r,
        ))  # fmt: skip
        self.client_auth = Labelled(Counter(
            "registry_gateway_client_auth_total", "Caller authentication decisions.",
            ["method", "result"], registry=r,
        ))  # fmt: skip
        self.ratelimit_remaining = Labelled(Gauge(
            "registry_gateway_upstream_ratelimit_remaining",
            "Pulls left in the upstream's rate-limit window (ratelimit-remaining).",
            ["upstream"], registry=r,
        ))  # fmt: skip
        self.upload_bytes = Labelled(Counter(
            "registry_gateway_upload_bytes_total", "Pushed body bytes relayed to upstreams.",
            ["upstream"], registry=r,
        ))  # fmt: skip
        # Additions for operating the gateway: readiness as a number and
        # the listener's connection cap (limits.max_connections).
        self.ready = Gauge(
            "registry_gateway_ready",
            "1 when /readyz answers 200, 0 while a check fails or the gateway drains.",
            registry=r,
        )
        self.connections = Gauge(
            "registry_gateway_connections", "Caller connections open now.", registry=r
        )
        self.connections_rejected = Counter(
            "registry_gateway_connections_rejected_total",
            "Caller connections refused with 503 because limits.max_connections was reached.",
            registry=r,
        )
        self.upstream_probe_success = Gauge(
            "registry_gateway_upstream_probe_success",
            "1 when the last probe reached the upstream and authenticated, else 0 "
            "(upstreams with probe_interval only).",
            ["upstream"], registry=r,
        )  # fmt: skip
        self.cache_requests = Counter(
            "registry_gateway_cache_requests_total", "Manifest and blob requests by cache outcome.",
            ["kind", "result"], registry=r,
        )  # fmt: skip
        self.cache_bytes_served = Counter(
            "registry_gateway_cache_bytes_served_total", "Body bytes answered from the cache.",
            registry=r,
        )  # fmt: skip
        self.cache_size = Gauge(
            "registry_gateway_cache_size_bytes", "Bytes stored in the cache.", registry=r
        )
        self.cache_evictions = Counter(
            "registry_gateway_cache_evictions_total", "Cache entries evicted for space.",
            registry=r,
        )  # fmt: skip
        self.cache_fills_inflight = Gauge(
            "registry_gateway_cache_fills_inflight", "Upstream fetches filling the cache now.",
            registry=r,
        )  # fmt: skip
        self.cache_integrity_failures = Counter(
            "registry_gateway_cache_integrity_failures_total",
            "Upstream content that did not hash to its digest (never published).",
            ["upstream"], registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "registry_gateway_rate_limited_total",
            "Requests refused or timed out by a limit (client: 429; upstream_concurrency: 503).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.cluster_up = Gauge(
            "registry_gateway_cluster_up",
            "1 while the cluster's Redis answers; 0 while this replica goes on alone.",
            registry=r,
        )  # fmt: skip
        self.cluster_errors = Counter(
            "registry_gateway_cluster_errors_total",
            "Redis calls that failed or timed out (the replica went on alone).",
            ["operation"], registry=r,
        )  # fmt: skip
