"""Fixtures for the access suite: one small image in a real registry, users, keys, gateways.

The upstream is the shared open docker-registry, configured twice: as ``docker.io`` (so the
default route adds ``library/``) and as ``gcr.io`` (so the path-prefix and ``ns`` forms are
real). Rules give anonymous the docker.io library, alice (tenant team-a) ``gcr.io/team-a/*``,
carol (tenant team-b) ``gcr.io/team-b/*``, and the ci group (dave, no tenant) everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.access.identities import ec_key, make_settings, pem, write_htpasswd
from tests.components import images
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"}
REPOS = ("library/alpine", "team-a/app", "team-b/app")
TAG = "v1"

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@dataclass(frozen=True)
class AccessImage:
    """The one image, pushed under every repository in REPOS."""

    manifest_digest: str
    blob_digests: list[str]


@pytest.fixture(scope="session")
def access_image(tmp_path_factory: pytest.TempPathFactory, registry_open: Registry) -> AccessImage:
    """A one-layer image at library/alpine, team-a/app and team-b/app (tag v1)."""
    layout = images.build_image(
        tmp_path_factory.mktemp("access-images"), "access-app", files={"/etc/app": b"app\n"}
    )
    pushed = [images.push(layout, registry_open, repo, TAG) for repo in REPOS]
    return AccessImage(pushed[0].manifest_digest, pushed[0].blob_digests)


def clients_section(**overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "auth": "token",
        "htpasswd": "htpasswd",
        "groups": {"ci": ["dave"]},
        "tenants": {"team-a": ["alice", "bob"], "team-b": ["carol"]},
        "token": {"key_file": "signing.pem", "ttl": 300},
        "access": [
            {"users": ["anonymous"], "repositories": ["docker.io/library/*"], "actions": ["pull"]},
            {"users": ["alice", "bob"], "repositories": ["gcr.io/team-a/*"], "actions": ["pull"]},
            {"users": ["carol"], "repositories": ["gcr.io/team-b/*"], "actions": ["pull"]},
            {"users": ["group:ci"], "repositories": ["*"], "actions": ["pull"]},
        ],
    }
    section.update(overrides)
    return section


def upstreams_for(registry: Registry) -> dict[str, dict[str, Any]]:
    return {"docker.io": {"url": registry.url}, "gcr.io": {"url": registry.url}}


@pytest.fixture
def auth_dir(tmp_path: Path) -> Path:
    """htpasswd (PASSWORDS) and an EC P-256 signing key, as relative paths resolve."""
    write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    (tmp_path / "signing.pem").write_bytes(pem(ec_key()))
    return tmp_path


@pytest.fixture
def settings_for(auth_dir: Path, registry_open: Registry) -> Callable[..., Settings]:
    """settings_for(**clients_overrides, upstreams=..., extra=...) → Settings (registry_open)."""

    def build(
        *,
        extra: dict[str, Any] | None = None,
        upstreams: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Settings:
        return make_settings(
            auth_dir,
            {**upstreams_for(registry_open), **(upstreams or {})},
            clients_section(**overrides),
            default="docker.io",
            **(extra or {}),
        )

    return build


@pytest.fixture
def gateway_client(
    aiohttp_client: ClientFactory, settings_for: Callable[..., Settings]
) -> Callable[..., Awaitable[TestClient[web.Request, web.Application]]]:
    """gateway_client(**clients_overrides): the app in-process behind a test client."""

    async def start(**overrides: Any) -> TestClient[web.Request, web.Application]:
        return await aiohttp_client(create_app(settings_for(**overrides)))

    return start


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """start_gateway(config, env=None): a real gateway process, stopped at teardown."""
    running: list[GatewayProcess] = []

    def start(config: dict[str, Any], env: dict[str, str] | None = None) -> GatewayProcess:
        gateway = GatewayProcess.start(tmp_path / f"gateway-{len(running)}", config, env=env)
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        gateway.stop()


async def metric(client: TestClient[web.Request, web.Application], **labels: str) -> float:
    """The current registry_gateway_client_auth_total sample for ``labels`` (0 if absent)."""
    text = await (await client.get("/metrics")).text()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"registry_gateway_client_auth_total{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def json_of(response: aiohttp.ClientResponse) -> Any:
    return await response.json(content_type=None)
