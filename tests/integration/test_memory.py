"""Memory stays flat whatever the blob size: a 256 MiB blob through the gateway process."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from tests.components import images
from tests.components.registry import Registry
from tests.integration.harness import GatewayFactory, registry_gateway_config

MIB = 1 << 20
BLOB_SIZE = 256 * MIB
PEAK_LIMIT = 150 * MIB


def random_chunks(total: int, chunk: int = 4 * MIB) -> Iterator[bytes]:
    """`total` bytes of random data, one chunk in memory at a time."""
    block = os.urandom(chunk)
    for index in range(total // chunk):
        # A fresh prefix per chunk keeps chunks distinct without generating 256 MiB of urandom.
        yield index.to_bytes(8, "big") + block[8:]


def peak_rss(pid: int) -> int:
    """VmHWM (peak resident set) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


async def test_256_mib_blob_streams_with_peak_rss_below_150_mib(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A 256 MiB blob arrives intact through the gateway process, whose VmHWM stays < 150 MiB."""
    digest = images.push_blob(registry_open, "it/memory", random_chunks(BLOB_SIZE))
    gateway = start_gateway(registry_gateway_config(registry_open))

    hasher = hashlib.sha256()
    received = 0
    async with http.get(f"{gateway.url}/v2/it/memory/blobs/{digest}") as response:
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == BLOB_SIZE
        async for chunk in response.content.iter_chunked(MIB):
            hasher.update(chunk)
            received += len(chunk)

    assert received == BLOB_SIZE
    assert f"sha256:{hasher.hexdigest()}" == digest
    peak = peak_rss(gateway.process.pid)
    assert peak < PEAK_LIMIT, f"gateway VmHWM {peak / MIB:.0f} MiB"
