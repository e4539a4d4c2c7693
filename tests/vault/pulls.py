"""Pulling through the gateway under test: a tiny image, configs, answers, metrics, logs.

Pulls are plain HTTP GETs through the gateway (the urllib client in tests/components), routed
by path prefix: ``/v2/<upstream key>/<repo>/manifests/<tag>``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.components import client
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class TestImage:
    """A one-layer OCI image pushed to a real registry."""

    __test__ = False  # not a pytest test class

    repo: str
    tag: str
    manifest_digest: str
    layer_digest: str
    layer: bytes


def push_image(registry: Registry, repo: str, tag: str = "v1") -> TestImage:
    """Push a config blob, a random layer and an OCI manifest naming them."""
    layer = os.urandom(2048)
    config = json.dumps({"architecture": "amd64", "os": "linux", "repo": repo}).encode()
    pushed = client.push_oci_image(registry, repo, tag, config=config, layer=layer)
    return TestImage(repo, tag, pushed.manifest_digest, pushed.layer_digest, layer)


def vault_upstream(registry: Registry, path: str, mount: str | None = None) -> dict[str, Any]:
    vault: dict[str, Any] = {"path": path}
    if mount is not None:
        vault["mount"] = mount
    return {"url": registry.url, "credentials": {"vault": vault}}


def gateway_config(
    vault: Mapping[str, Any], upstreams: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """A gateway config: these upstreams (first is the default) and this vault section."""
    return {
        "upstreams": {key: dict(value) for key, value in upstreams.items()},
        "routing": {"default": next(iter(upstreams))},
        "vault": dict(vault),
        # These tests watch credentials being used on every pull: every pull reaches upstream.
        "cache": {"enabled": False},
    }


def pull(gateway: GatewayProcess, upstream: str, image: TestImage) -> client.Response:
    """GET the image's manifest through the gateway."""
    return client.send(
        f"{gateway.url}/v2/{upstream}/{image.repo}/manifests/{image.tag}",
        headers={"Accept": OCI_MANIFEST},
    )


def pull_blob(gateway: GatewayProcess, upstream: str, image: TestImage) -> client.Response:
    return client.send(f"{gateway.url}/v2/{upstream}/{image.repo}/blobs/{image.layer_digest}")


def assert_pulled(response: client.Response, image: TestImage) -> None:
    """The gateway answered 200 with the exact manifest bytes."""
    assert response.status == 200, (response.status, response.body[:500])
    assert f"sha256:{hashlib.sha256(response.body).hexdigest()}" == image.manifest_digest


def oci_error(response: client.Response, status: int) -> dict[str, Any]:
    """The single OCI error of an error answer with this status."""
    assert response.status == status, (response.status, response.body[:500])
    errors = json.loads(response.body)["errors"]
    assert len(errors) == 1
    error: dict[str, Any] = errors[0]
    return error


def readiness(gateway: GatewayProcess) -> tuple[int, dict[str, Any]]:
    response = client.send(f"{gateway.url}/readyz")
    body: dict[str, Any] = json.loads(response.body)
    return response.status, body


def metric(gateway: GatewayProcess, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    text = client.send(f"{gateway.url}/metrics").body.decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def assert_no_secrets(gateway: GatewayProcess, secrets: Iterable[str]) -> None:
    """No secret value (nor the Basic encoding of a user:password pair) in any log line."""
    text = gateway.log_text()
    assert gateway.log_lines(), "the gateway wrote no log lines"
    for secret in secrets:
        assert secret not in text, "a secret value appears in the gateway log"
        assert base64.b64encode(secret.encode()).decode() not in text
