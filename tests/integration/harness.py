"""What the integration tests share: gateway configs, the OCI error check, metrics, images.

The gateway always runs as a real process (tests/gateway_process.py); these helpers build its
config from real registries or loopback apps, read its answers and its /metrics, and push
small images whose content is chosen by the test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from prometheus_client.parser import text_string_to_metric_families

from tests.components import client
from tests.components.ports import wait_until
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX)
ALL_MANIFESTS_ACCEPT = ", ".join(MANIFEST_TYPES)
GATEWAY_USER_AGENT = "registry-gateway/"

# The `start_gateway` fixture: start_gateway(config, env=None) -> a running GatewayProcess.
GatewayFactory = Callable[..., GatewayProcess]


def upstream(url: str, **extra: Any) -> dict[str, Any]:
    """One `upstreams.<key>` entry."""
    return {"url": url, **extra}


def gateway_config(
    upstreams: Mapping[str, Mapping[str, Any]],
    *,
    default: str | None,
    hosts: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A gateway config dict (GatewayProcess.start fills in `listen` and `log`)."""
    return {
        "upstreams": {key: dict(value) for key, value in upstreams.items()},
        "routing": {"default": default, "hosts": dict(hosts or {})},
        **extra,
    }


def registry_gateway_config(registry: Registry, **upstream_extra: Any) -> dict[str, Any]:
    """One real registry as the only (and default) upstream, keyed by its host:port."""
    return gateway_config(
        {registry.host: upstream(registry.url, **upstream_extra)}, default=registry.host
    )


@dataclass(frozen=True)
class Answer:
    """A gateway response read to the end."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Answer:
    """One request through the gateway, body read completely."""
    async with session.request(method, url, allow_redirects=False, **kwargs) as response:
        body = await response.read()
        return Answer(response.status, response.headers, body)


def assert_oci_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    """The answer is the OCI error envelope with `status` and `code`; return its one error."""
    assert answer.status == status, (answer.status, answer.body[:500])
    assert answer.headers.get("Content-Type", "").startswith("application/json")
    assert answer.headers.get("X-Request-ID")
    body = answer.json()
    assert set(body) == {"errors"}
    assert isinstance(body["errors"], list) and len(body["errors"]) >= 1
    error: dict[str, Any] = body["errors"][0]
    assert error["code"] == code, body
    assert re.fullmatch(r"[A-Z_]+", error["code"])
    assert isinstance(error.get("message"), str)
    return error


def sha256_digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                total += item.value
    return total


async def scrape(session: aiohttp.ClientSession, gateway_url: str) -> str:
    async with session.get(f"{gateway_url}/metrics") as response:
        assert response.status == 200
        return await response.text()


@dataclass(frozen=True)
class MarkerImage:
    """A one-layer OCI image whose config names `marker`, so every push has its own digest."""

    repo: str
    tag: str
    manifest_digest: str
    manifest: bytes
    config_digest: str
    layer_digest: str
    layer: bytes


def push_marker_image(registry: Registry, repo: str, tag: str, marker: str) -> MarkerImage:
    """A one-layer image via client.push_oci_image (no umoci: not for unpacking)."""
    layer = f"layer of {marker}\n".encode() * 64
    config = json.dumps({"architecture": "amd64", "os": "linux", "marker": marker}).encode()
    pushed = client.push_oci_image(registry, repo, tag, config=config, layer=layer)
    return MarkerImage(
        repo,
        tag,
        pushed.manifest_digest,
        pushed.manifest,
        pushed.config_digest,
        pushed.layer_digest,
        layer,
    )


def registry_access_lines(registry: Registry, path_fragment: str) -> list[str]:
    """The registry's access-log lines for requests the gateway sent to a path."""
    return [
        line
        for line in registry.log_path.read_text(errors="replace").splitlines()
        if f" {path_fragment}" in line and f'"{GATEWAY_USER_AGENT}' in line
    ]


def access_status(line: str) -> int:
    """The status code of one combined-format access-log line."""
    match = re.search(r'" (\d{3}) ', line)
    assert match, line
    return int(match.group(1))


def gateway_requests(log_lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gateway's canonical per-request log lines under /v2/."""
    return [
        line
        for line in log_lines
        if line.get("event") == "request_completed" and str(line.get("path", "")).startswith("/v2/")
    ]


def write_docker_config(path: Path, registry_key: str, username: str, password: str) -> Path:
    """A Docker config.json with one `auths` entry in the `auth` (base64 user:pass) form."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {registry_key: {"auth": auth}}}))
    return path


def logged(
    gateway: GatewayProcess,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 3.0,
) -> list[dict[str, Any]]:
    """The gateway's log lines once `predicate` holds for them (the canonical line of a
    request is written after its body went out, so a caller can be ahead of the log)."""
    lines: list[dict[str, Any]] = []

    def ready() -> bool:
        nonlocal lines
        lines = gateway.log_lines()
        return predicate(lines)

    wait_until(ready, timeout=timeout)
    return lines
