"""A large push streams through the gateway process with its memory flat."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp

from tests.components import client as registry_client
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.integration.test_memory import MIB, peak_rss

BLOB_SIZE = 256 * MIB
GROWTH_LIMIT = 64 * MIB
BLOCK = os.urandom(4 * MIB)


def chunks() -> Iterator[bytes]:
    """The same BLOB_SIZE bytes on every call, one 4 MiB chunk in memory at a time."""
    for index in range(BLOB_SIZE // len(BLOCK)):
        yield index.to_bytes(8, "big") + BLOCK[8:]


async def test_a_256_mib_push_grows_the_gateway_peak_rss_by_less_than_64_mib(
    registry_open: Registry, tmp_path: Path
) -> None:
    """POST then a streamed PUT ?digest= of 256 MiB: the registry holds the blob, and the
    gateway's VmHWM grew by less than 64 MiB."""
    upstream = {"url": registry_open.url, "push": True}
    config = {"upstreams": {"mem.test": upstream}, "routing": {"default": "mem.test"}}
    hasher = hashlib.sha256()
    for chunk in chunks():
        hasher.update(chunk)
    digest = f"sha256:{hasher.hexdigest()}"

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks():
            yield chunk

    with GatewayProcess.start(tmp_path / "gateway", config) as gateway:
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(f"{gateway.url}/v2/") as warm:
                assert warm.status == 200
            before = peak_rss(gateway.process.pid)
            async with http.post(f"{gateway.url}/v2/it/push-memory/blobs/uploads/") as started:
                assert started.status == 202
                location = started.headers["Location"]
            async with http.put(
                f"{gateway.url}{location}?digest={digest}", data=body(),
                headers={"Content-Type": "application/octet-stream"},
            ) as done:  # fmt: skip
                assert done.status == 201, await done.text()
            growth = peak_rss(gateway.process.pid) - before
    assert registry_client.get_blob(registry_open, "it/push-memory", digest).status == 200
    assert growth < GROWTH_LIMIT, f"gateway VmHWM grew {growth / MIB:.0f} MiB"
