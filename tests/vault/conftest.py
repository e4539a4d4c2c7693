"""Fixtures for the Vault suite: the shared OpenBao and htpasswd registry, an image, gateways.

Tests that stop OpenBao or change a registry password start their own instances; the rest
share the session ones and keep apart by writing their secrets under unique paths.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.vault.pulls import TestImage, push_image

GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture(scope="session")
def private_image(registry_htpasswd: Registry) -> TestImage:
    """An image in the shared htpasswd registry, which wants Basic credentials."""
    return push_image(registry_htpasswd, "vault-suite/app")


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    """start_gateway(config, env=None) runs a gateway process, stopped at teardown."""
    running: list[GatewayProcess] = []
    numbers = itertools.count(1)

    def start(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> GatewayProcess:
        gateway = GatewayProcess.start(tmp_path / f"gateway-{next(numbers)}", config, env=env)
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        gateway.stop()
