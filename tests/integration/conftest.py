"""Integration fixtures: gateway processes, a checked HTTP session, and pushed test images.

The real components (registries, token server, containerd) come from tests/components via the
root conftest; everything here builds on them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from tests.components import images
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.integration.harness import GatewayFactory


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    """`start_gateway(config, env=None)` starts a gateway process; all stop after the test."""
    started: list[GatewayProcess] = []

    def start(config: Mapping[str, Any], *, env: Mapping[str, str] | None = None) -> GatewayProcess:
        gateway = GatewayProcess.start(tmp_path / f"gateway-{len(started)}", config, env=env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A caller's HTTP session; at teardown, every response it got must have had X-Request-ID."""
    missing: list[str] = []

    async def on_request_end(
        _session: aiohttp.ClientSession,
        _context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        if "X-Request-ID" not in params.response.headers:
            missing.append(f"{params.method} {params.url} -> {params.response.status}")

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    async with aiohttp.ClientSession(
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=90),
        trace_configs=[trace],
    ) as session:
        yield session
    assert not missing, f"responses without X-Request-ID: {missing}"


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integration-images")


@pytest.fixture(scope="session")
def single_image(image_dir: Path, registry_open: Registry) -> images.PushedImage:
    """A two-layer linux/amd64 image at `it/single:v1` on registry_open."""
    layout = images.build_image(
        image_dir,
        "it-single",
        files={"/data/random.bin": os.urandom(200_000), "/etc/it-single.txt": b"single\n"},
        layer_count=2,
    )
    return images.push(layout, registry_open, "it/single", "v1")


@pytest.fixture(scope="session")
def multiarch_image(image_dir: Path, registry_open: Registry) -> images.PushedImage:
    """An OCI index (linux/amd64 + linux/arm64) at `it/multi:v1` on registry_open."""
    layout = images.build_multiarch(image_dir, name="it-multi")
    return images.push(layout, registry_open, "it/multi", "v1", all_arches=True)
