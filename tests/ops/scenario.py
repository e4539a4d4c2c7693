"""The observed scenario: real pulls through a gateway process, scraped by a real Prometheus.

`run_scenario` starts a gateway in front of three upstreams (the token-auth registry with a
static password, the Basic-auth registry whose password lives in OpenBao, and the loopback
Docker-Hub stand-in that sends ``ratelimit-remaining``), a Prometheus scraping the gateway's
separate metrics listener with the repository's alert rules loaded, then makes known requests
in two batches and a real ``skopeo copy`` pull. After each step it waits for Prometheus to
scrape again and snapshots every query in QUERIES, so the tests only compare numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.components import client, images, skopeo
from tests.components.openbao import OpenBao
from tests.components.ports import free_port
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.ops.prometheus import Prometheus
from tests.ops.upstream import SlowUpstream

VAULT_PATH = "ops/htpasswd"
MISSING_TAG = "does-not-exist"
SECOND_BATCH_BLOB_GETS = 5
ALERTS = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "alerts.yml"


@dataclass
class Scenario:
    gateway: GatewayProcess
    prometheus: Prometheus
    registry: str  # upstream key of the token-auth registry (the default route)
    vaulted: str  # upstream key of the Basic-auth registry with its password in OpenBao
    hub: str  # upstream key of the Docker-Hub stand-in
    image: images.PushedImage
    metrics_host: str  # the gateway's separate metrics listener, which Prometheus scrapes
    manifest_bytes: int = 0  # body bytes of every manifest response from `registry`
    blob_bytes: dict[str, int] = field(default_factory=dict)
    snapshots: dict[str, dict[str, float | None]] = field(default_factory=dict)
    exposition: str = ""

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_host}/metrics"


def queries(s: Scenario) -> dict[str, str]:
    """Every PromQL expression the tests check, by a short name."""
    reg, hub, vaulted = s.registry, s.hub, s.vaulted
    return {
        "manifest_get_200": (
            'registry_gateway_requests_total{route="manifest",method="GET",code="200"}'
        ),
        "manifest_head_200": (
            'registry_gateway_requests_total{route="manifest",method="HEAD",code="200"}'
        ),
        "manifest_get_404": (
            'registry_gateway_requests_total{route="manifest",method="GET",code="404"}'
        ),
        "blob_get_200": 'registry_gateway_requests_total{route="blob",method="GET",code="200"}',
        "base_get_200": 'registry_gateway_requests_total{route="base",method="GET",code="200"}',
        "base_post_405": 'registry_gateway_requests_total{route="base",method="POST",code="405"}',
        "manifest_duration_count": (
            'registry_gateway_request_duration_seconds_count{route="manifest"}'
        ),
        "manifest_p50_finite": (
            "histogram_quantile(0.5, sum by (le) "
            '(registry_gateway_request_duration_seconds_bucket{route="manifest"}))'
        ),
        "upstream_manifest_200": (
            f'registry_gateway_upstream_requests_total{{upstream="{reg}",route="manifest",code="200"}}'
        ),
        "upstream_manifest_401": (
            f'registry_gateway_upstream_requests_total{{upstream="{reg}",route="manifest",code="401"}}'
        ),
        "upstream_manifest_404": (
            f'registry_gateway_upstream_requests_total{{upstream="{reg}",route="manifest",code="404"}}'
        ),
        "upstream_blob_200": (
            f'registry_gateway_upstream_requests_total{{upstream="{reg}",route="blob",code="200"}}'
        ),
        "upstream_manifest_latency_count": (
            "registry_gateway_upstream_request_duration_seconds_count"
            f'{{upstream="{reg}",route="manifest"}}'
        ),
        "bytes_blob": f'registry_gateway_bytes_sent_total{{upstream="{reg}",route="blob"}}',
        "bytes_manifest": (
            f'registry_gateway_bytes_sent_total{{upstream="{reg}",route="manifest"}}'
        ),
        "tokens_fetched": (
            f'registry_gateway_upstream_tokens_total{{upstream="{reg}",result="fetched"}}'
        ),
        "tokens_cached": (
            f'registry_gateway_upstream_tokens_total{{upstream="{reg}",result="cached"}}'
        ),
        "ratelimit_remaining": (
            f'registry_gateway_upstream_ratelimit_remaining{{upstream="{hub}"}}'
        ),
        "hub_manifest_200": (
            f'registry_gateway_upstream_requests_total{{upstream="{hub}",route="manifest",code="200"}}'
        ),
        "vaulted_manifest_200": (
            f'registry_gateway_upstream_requests_total{{upstream="{vaulted}",route="manifest",code="200"}}'
        ),
        "vault_read_ok": ('registry_gateway_vault_requests_total{operation="read",result="ok"}'),
        "vault_read_duration_count": (
            'registry_gateway_vault_request_duration_seconds_count{operation="read"}'
        ),
        "vault_errors": 'sum(registry_gateway_vault_requests_total{result="error"}) or vector(0)',
        "inflight": "registry_gateway_inflight_requests",
        "ready": "registry_gateway_ready",
        "connections_rejected": "registry_gateway_connections_rejected_total",
    }


def _get(url: str, *, method: str = "GET", accept: str | None = None) -> client.Response:
    headers = {"Accept": accept} if accept else {}
    return client.send(url, method=method, headers=headers)


def _snapshot(s: Scenario, name: str) -> None:
    s.prometheus.wait_for_next_scrape()
    s.snapshots[name] = {key: s.prometheus.value(expr) for key, expr in queries(s).items()}


def first_batch(s: Scenario) -> None:
    """The known requests whose counts the tests assert exactly."""
    base, repo = s.gateway.url, s.image.repo
    manifest_url = f"{base}/v2/{repo}/manifests/{s.image.tag}"
    assert _get(f"{base}/v2/").status == 200
    for _ in range(3):
        response = _get(manifest_url, accept=client.MANIFEST_ACCEPT)
        assert response.status == 200, response.body
        s.manifest_bytes += len(response.body)
    assert _get(manifest_url, method="HEAD", accept=client.MANIFEST_ACCEPT).status == 200
    for digest in s.image.blob_digests:
        response = _get(f"{base}/v2/{repo}/blobs/{digest}")
        assert response.status == 200, response.body
        s.blob_bytes[digest] = len(response.body)
    for _ in range(2):
        response = _get(f"{base}/v2/{repo}/manifests/{MISSING_TAG}")
        assert response.status == 404, response.body
        s.manifest_bytes += len(response.body)  # the relayed error body counts too
    hub_manifest = f"{base}/v2/library/app/manifests/latest?ns={s.hub}"
    assert _get(hub_manifest, accept=client.MANIFEST_ACCEPT).status == 200
    vaulted_manifest = f"{base}/v2/{repo}/manifests/{s.image.tag}?ns={s.vaulted}"
    assert _get(vaulted_manifest, accept=client.MANIFEST_ACCEPT).status == 200
    assert _get(f"{base}/v2/", method="POST").status == 405


def second_batch(s: Scenario) -> None:
    """More blob GETs, to check increments between two scrapes."""
    digest = s.image.blob_digests[-1]
    for _ in range(SECOND_BATCH_BLOB_GETS):
        assert _get(f"{s.gateway.url}/v2/{s.image.repo}/blobs/{digest}").status == 200


def skopeo_pull(s: Scenario, workdir: Path) -> None:
    """A real client pull through the gateway: skopeo copy into an OCI layout."""
    skopeo.copy_to_oci(
        f"docker://{s.gateway.host}/{s.image.repo}:{s.image.tag}", workdir / "pulled"
    )
    index = json.loads((workdir / "pulled" / "index.json").read_text())
    assert index["manifests"], "skopeo pulled nothing"


def run_scenario(
    workdir: Path,
    stoppables: list[Any],
    *,
    registry_token: Registry,
    registry_htpasswd: Registry,
    openbao: OpenBao,
    image: images.PushedImage,
    vaulted_image: images.PushedImage,
) -> Scenario:
    """Start everything and run the steps; whatever it starts goes into ``stoppables``."""
    hub = SlowUpstream.start(workdir / "hub", blob_size=4096, chunks=1, delay=0)
    stoppables.append(hub)
    vault = openbao.client()
    assert registry_htpasswd.credentials is not None
    user, password = registry_htpasswd.credentials
    vault.secrets.kv.v2.create_or_update_secret(
        path=VAULT_PATH, secret={"username": user, "password": password}, mount_point="secret"
    )
    metrics_port = free_port()
    config: Mapping[str, Any] = {
        "metrics": {"path": "/metrics", "listen": f"127.0.0.1:{metrics_port}"},
        "routing": {"default": registry_token.host},
        "upstreams": {
            registry_token.host: {
                "url": registry_token.url,
                "credentials": {"username": registry_token.username,
                                "password_env": "OPS_REGISTRY_PASSWORD"},
            },
            registry_htpasswd.host: {
                "url": registry_htpasswd.url,
                "credentials": {"vault": {"path": VAULT_PATH}},
            },
            hub.host: {"url": hub.url},
        },
        "vault": {
            "url": openbao.url,
            "kv_mount": "secret",
            "kv_version": 2,
            "auth": {"method": "token", "token_env": "VAULT_TOKEN"},
        },
        # The scenario counts upstream requests exactly: every pull must reach the upstream.
        "cache": {"enabled": False},
    }  # fmt: skip
    env = {"OPS_REGISTRY_PASSWORD": registry_token.password, "VAULT_TOKEN": openbao.root_token}
    gateway = GatewayProcess.start(workdir / "gateway", config, env=env)
    stoppables.append(gateway)
    metrics_host = f"127.0.0.1:{metrics_port}"
    prometheus = Prometheus.start(workdir / "prometheus", [metrics_host], rule_files=[ALERTS])
    stoppables.append(prometheus)
    s = Scenario(
        gateway=gateway,
        prometheus=prometheus,
        registry=registry_token.host,
        vaulted=registry_htpasswd.host,
        hub=hub.host,
        image=image,
        metrics_host=metrics_host,
    )
    assert vaulted_image.repo == image.repo and vaulted_image.tag == image.tag
    first_batch(s)
    _snapshot(s, "first")
    second_batch(s)
    _snapshot(s, "second")
    skopeo_pull(s, workdir)
    _snapshot(s, "pulled")
    s.exposition = client.send(s.metrics_url).body.decode()
    return s
