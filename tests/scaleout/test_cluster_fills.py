"""One upstream fetch per digest across replicas behind a real load balancer (haproxy)."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.components.balancer import Balancer
from tests.components.images import push_blob
from tests.components.redis import Redis
from tests.components.registry import Registry
from tests.components.seaweedfs import SeaweedFS
from tests.scaleout.conftest import replica_config, upstream_gets

MiB = 1 << 20


def blob_chunks(size: int, seed: bytes) -> Iterator[bytes]:
    """Deterministic pseudo-random bytes without holding the blob in memory."""
    block = hashlib.sha256(seed).digest() * (MiB // 32)
    for i in range(size // MiB):
        yield block[i % 32 :] + block[: i % 32]


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, str, int]:
    """(status, sha256 of the body, bytes) of one streamed GET; a cut body raises."""
    hasher = hashlib.sha256()
    async with session.get(url) as response:
        async for chunk in response.content.iter_chunked(MiB):
            hasher.update(chunk)
        return response.status, "sha256:" + hasher.hexdigest(), response.content_length or 0


def stored_blobs(seaweedfs: SeaweedFS, prefix: str, digest: str) -> list[str]:
    return [k for k in seaweedfs.keys(prefix=prefix) if "/blobs/" in k and k.endswith(digest[7:])]


async def test_concurrent_cold_gets_through_three_replicas_cost_one_upstream_get(
    seaweedfs: SeaweedFS, upstream: Registry, redis: Redis, replicas, prefix: str, tmp_path: Path
) -> None:
    """3 replicas behind haproxy, 12 concurrent cold GETs of a 64 MiB blob: one upstream GET,
    every caller's sha256 right, the blob stored once and no multipart upload left open."""
    digest = push_blob(upstream, "big/blob", blob_chunks(64 * MiB, b"concurrent"))
    group = replicas(3, replica_config(upstream, seaweedfs, prefix, redis))
    with Balancer.start(tmp_path / "haproxy", [g.host for g in group]) as balancer:
        url = f"{balancer.url}/v2/big/blob/blobs/{digest}"
        timeout = aiohttp.ClientTimeout(total=240)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            results = await asyncio.gather(*(fetch(session, url) for _ in range(12)))
    assert [r[0] for r in results] == [200] * 12
    assert {r[1] for r in results} == {digest}
    assert upstream_gets(upstream, digest) == 1
    assert len(stored_blobs(seaweedfs, prefix, digest)) == 1
    assert seaweedfs.uploads_in_progress() == 0


async def test_a_replica_killed_mid_fill_is_taken_over_within_the_lease(
    seaweedfs: SeaweedFS, upstream: Registry, redis: Redis, replicas, prefix: str
) -> None:
    """The filling replica is SIGKILLed mid-fill: another takes the lease over within
    fill_lease + a few seconds; its callers get the right bytes, the killed one's caller gets
    a cut body (never a complete wrong one), and the blob ends up stored once."""
    digest = push_blob(upstream, "big/killed", blob_chunks(96 * MiB, b"killed"))
    a, b = replicas(2, replica_config(upstream, seaweedfs, prefix, redis))  # fill_lease: 6
    timeout = aiohttp.ClientTimeout(total=240)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        received = 0
        hasher = hashlib.sha256()

        async def on_a() -> None:
            nonlocal received
            async with session.get(f"{a.url}/v2/big/killed/blobs/{digest}") as response:
                assert response.status == 200
                async for chunk in response.content.iter_chunked(MiB):
                    received += len(chunk)
                    hasher.update(chunk)

        filling = asyncio.create_task(on_a())
        while received < 2 * MiB:
            assert not filling.done(), "the fill through A ended before it could be killed"
            await asyncio.sleep(0.05)
        followers = [
            asyncio.create_task(fetch(session, f"{b.url}/v2/big/killed/blobs/{digest}"))
            for _ in range(3)
        ]
        await asyncio.sleep(0.5)  # B's callers are waiting on A's lease now
        a.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.raises(aiohttp.ClientError):
            await filling
        assert received < 96 * MiB
        results = await asyncio.gather(*followers)
        finished = time.monotonic() - killed_at
    assert [r[:2] for r in results] == [(200, digest)] * 3
    # lease expiry (6 s) + a poll + the refetch and upload of 96 MiB on a shared machine
    assert finished < 6 + 45
    assert upstream_gets(upstream, digest) == 2
    assert len(stored_blobs(seaweedfs, prefix, digest)) == 1
    log = b.log_text()
    assert "cluster_fill_taken_over" in log
