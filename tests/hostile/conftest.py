"""A gateway process per client auth mode (none, basic, token) in front of a real registry.

The registry is the shared open docker-registry, configured as ``docker.io`` (the default, so
``library/`` is added) and as ``gcr.io`` (so the path-prefix and ``ns`` forms are real). Rules
let anonymous callers pull ``docker.io/library/*`` and alice everything.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.identities import ec_key, pem, write_htpasswd
from tests.components.client import PushedManifest, push_oci_image
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess

MODES = ("none", "basic", "token")
USER, PASSWORD = "alice", "alice-pw"
REPOSITORY, TAG = "library/alpine", "v1"


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def gateway_config(registry: Registry, mode: str, auth_dir: Path, **limits: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "upstreams": {"docker.io": {"url": registry.url}, "gcr.io": {"url": registry.url}},
        "routing": {"default": "docker.io"},
    }
    if limits:
        config["limits"] = limits
    if mode != "none":
        config["clients"] = {
            "auth": mode,
            "htpasswd": str(auth_dir / "htpasswd"),
            "token": {"key_file": str(auth_dir / "signing.pem")},
            # Generated logins must not lock the shared address out of the other tests.
            "login_limit": {"failures": 1_000_000, "window": 1},
            "access": [
                {"users": ["anonymous"], "repositories": ["docker.io/library/*"]},
                {"users": [USER], "repositories": ["*"]},
            ],
        }
    return config


def log_problems(gateway: GatewayProcess) -> list[str]:
    """Log lines that mean a request was mishandled: tracebacks, errors, 5xx of our own."""
    problems = [line for line in gateway.log_text().splitlines() if "Traceback" in line]
    for entry in gateway.log_lines():
        if entry.get("level") in ("error", "critical") or entry.get("event") == "request_failed":
            problems.append(str(entry)[:500])
    return problems


@pytest.fixture(scope="session")
def hostile_image(registry_open: Registry) -> PushedManifest:
    """A minimal OCI image at library/alpine:v1 on the open registry."""
    return push_oci_image(registry_open, REPOSITORY, TAG, config=b"{}", layer=b"hostile-layer")


@pytest.fixture(scope="package")
def auth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """htpasswd (alice) and an EC P-256 signing key."""
    directory = tmp_path_factory.mktemp("hostile-auth")
    write_htpasswd(directory / "htpasswd", {USER: PASSWORD})
    (directory / "signing.pem").write_bytes(pem(ec_key()))
    return directory


@pytest.fixture(scope="package")
def gateways(
    tmp_path_factory: pytest.TempPathFactory,
    registry_open: Registry,
    hostile_image: PushedManifest,
    auth_dir: Path,
) -> Iterator[dict[str, GatewayProcess]]:
    """One running gateway per auth mode, shared by the package's tests."""
    running: dict[str, GatewayProcess] = {}
    try:
        for mode in MODES:
            workdir = tmp_path_factory.mktemp(f"hostile-{mode}")
            running[mode] = GatewayProcess.start(
                workdir, gateway_config(registry_open, mode, auth_dir)
            )
        yield running
    finally:
        for gateway in running.values():
            gateway.stop()
