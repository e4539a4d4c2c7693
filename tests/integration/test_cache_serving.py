"""Serving from the cache against a real registry: repository membership, Range and HEAD on
hits and misses, LRU eviction (never under a reader), `cache verify|stats|purge`, /readyz.

Upstream requests are counted in the registry's access log (the gateway's User-Agent only).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.components import images
from tests.components.registry import Registry
from tests.gateway_process import REPO_ROOT, GatewayProcess
from tests.integration.harness import (
    GatewayFactory,
    fetch,
    registry_access_lines,
    registry_gateway_config,
    sample,
    scrape,
    sha256_digest,
)

MIB = 1 << 20


def upstream_lines(registry: Registry, path: str, method: str) -> list[str]:
    return [line for line in registry_access_lines(registry, path) if f'"{method} ' in line]


def stored_files(gateway: GatewayProcess, digest: str) -> list[Path]:
    return [p for p in (gateway.workdir / "cache").rglob(digest.split(":")[1]) if p.is_file()
            and "_links" not in p.parts]  # fmt: skip


def cache_command(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "cache", *args,
         "--config", str(gateway.workdir / "gateway.yaml")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


async def test_digest_seen_in_one_repository_is_not_served_under_another_unconfirmed(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A cached layer of cache/private asked under cache/public: the upstream HEAD for
    cache/public decides (404 → not served); once the upstream has it there, it is a hit."""
    data = os.urandom(300_000)
    digest = images.push_blob(registry_open, "cache/private", data)
    gateway = start_gateway(registry_gateway_config(registry_open))
    private = f"{gateway.url}/v2/cache/private/blobs/{digest}"
    public = f"{gateway.url}/v2/cache/public/blobs/{digest}"
    assert (await fetch(http, "GET", private)).body == data

    refused = await fetch(http, "GET", public)

    assert refused.status == 404 and refused.headers.get("X-Cache") != "HIT"
    assert len(upstream_lines(registry_open, f"/v2/cache/public/blobs/{digest}", "HEAD")) == 1
    images.push_blob(registry_open, "cache/public", data)
    gets_before = len(upstream_lines(registry_open, f"/v2/cache/public/blobs/{digest}", "GET"))
    allowed = await fetch(http, "GET", public)
    assert (allowed.status, allowed.headers["X-Cache"], allowed.body) == (200, "HIT", data)
    assert len(upstream_lines(registry_open, f"/v2/cache/public/blobs/{digest}", "GET")) == (
        gets_before
    )


async def test_range_and_head_on_a_hit_are_answered_locally(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """On a cached blob: HEAD, a range, a suffix range and a 416 all come without upstream calls."""
    data = os.urandom(3 * MIB + 17)
    digest = images.push_blob(registry_open, "cache/ranges", data)
    gateway = start_gateway(registry_gateway_config(registry_open))
    url = f"{gateway.url}/v2/cache/ranges/blobs/{digest}"
    assert (await fetch(http, "GET", url)).headers["X-Cache"] == "MISS"
    upstream_before = len(registry_access_lines(registry_open, f"/v2/cache/ranges/blobs/{digest}"))

    head = await fetch(http, "HEAD", url)
    part = await fetch(http, "GET", url, headers={"Range": "bytes=100-1048675"})
    suffix = await fetch(http, "GET", url, headers={"Range": "bytes=-10"})
    beyond = await fetch(http, "GET", url, headers={"Range": f"bytes={len(data)}-"})

    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.headers["ETag"] == f'"{digest}"'
    assert head.headers["Accept-Ranges"] == "bytes"
    assert head.headers["X-Cache"] == "HIT"
    assert (part.status, part.body) == (206, data[100:1048676])
    assert part.headers["Content-Range"] == f"bytes 100-1048675/{len(data)}"
    assert (suffix.status, suffix.body) == (206, data[-10:])
    assert beyond.status == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"
    assert int(beyond.headers["Content-Length"]) == len(beyond.body)
    assert beyond.json()["errors"][0]["code"] == "RANGE_INVALID"
    assert (
        len(registry_access_lines(registry_open, f"/v2/cache/ranges/blobs/{digest}"))
        == upstream_before
    )


async def test_range_and_head_on_a_miss_go_upstream_without_a_fill(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """An uncached blob: HEAD is an upstream HEAD, a Range GET an upstream ranged GET; no fill."""
    data = os.urandom(2 * MIB)
    digest = images.push_blob(registry_open, "cache/miss", data)
    gateway = start_gateway(registry_gateway_config(registry_open))
    path = f"/v2/cache/miss/blobs/{digest}"

    head = await fetch(http, "HEAD", f"{gateway.url}{path}")
    part = await fetch(http, "GET", f"{gateway.url}{path}", headers={"Range": "bytes=10-19"})

    assert (head.status, head.headers["Content-Length"]) == (200, str(len(data)))
    assert head.headers["X-Cache"] == "MISS"
    assert (part.status, part.body, part.headers["X-Cache"]) == (206, data[10:20], "MISS")
    assert len(upstream_lines(registry_open, path, "HEAD")) == 1
    assert len(upstream_lines(registry_open, path, "GET")) == 1
    assert stored_files(gateway, digest) == []
    full = await fetch(http, "GET", f"{gateway.url}{path}")
    assert (full.headers["X-Cache"], full.body) == ("MISS", data)


async def test_lru_eviction_keeps_the_store_under_max_size_but_never_under_a_reader(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """max_size 32 MiB, 24 + 8 + 8 MiB pulled: entries are evicted, not the one being read."""
    big = os.urandom(24 * MIB)
    others = [os.urandom(8 * MIB) for _ in range(2)]
    big_digest = images.push_blob(registry_open, "cache/evict", big)
    other_digests = [images.push_blob(registry_open, "cache/evict", d) for d in others]
    gateway = start_gateway({**registry_gateway_config(registry_open),
                             "cache": {"max_size": "32MiB"}})  # fmt: skip
    base = f"{gateway.url}/v2/cache/evict/blobs"
    assert (await fetch(http, "GET", f"{base}/{big_digest}")).body == big

    async with (
        aiohttp.ClientSession(read_bufsize=64 * 1024) as slow,
        slow.get(f"{base}/{big_digest}") as reading,
    ):
        assert reading.headers["X-Cache"] == "HIT"
        first = await reading.content.readexactly(MIB)
        for digest, data in zip(other_digests, others, strict=True):
            assert (await fetch(http, "GET", f"{base}/{digest}")).body == data
        await asyncio.sleep(0.5)
        metrics = await scrape(http, gateway.url)
        assert sample(metrics, "registry_gateway_cache_evictions_total") >= 1
        assert stored_files(gateway, big_digest), "evicted under its reader"
        rest = await reading.content.read()
    assert sha256_digest(first + rest) == big_digest
    assert sample(metrics, "registry_gateway_cache_size_bytes") <= 32 * MIB
    total = sum(p.stat().st_size for d in [big_digest, *other_digests]
                for p in stored_files(gateway, d))  # fmt: skip
    assert total <= 32 * MIB


async def test_cache_verify_names_and_removes_a_corrupted_file(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A stored blob altered on disk: `cache verify` exits 1 naming it; the next GET refetches."""
    data = os.urandom(MIB)
    digest = images.push_blob(registry_open, "cache/verify", data)
    gateway = start_gateway(registry_gateway_config(registry_open))
    url = f"{gateway.url}/v2/cache/verify/blobs/{digest}"
    assert (await fetch(http, "GET", url)).body == data
    assert cache_command(gateway, "verify").returncode == 0
    [path] = stored_files(gateway, digest)
    with path.open("r+b") as file:
        file.seek(1000)
        file.write(b"\x00" if data[1000] else b"\x01")

    result = cache_command(gateway, "verify")

    assert result.returncode == 1, result
    assert digest in result.stdout
    assert stored_files(gateway, digest) == []
    again = await fetch(http, "GET", url)
    assert (again.headers["X-Cache"], hashlib.sha256(again.body).hexdigest()) == (
        "MISS", digest.split(":")[1])  # fmt: skip


async def test_cache_stats_and_purge_by_repository(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """`cache stats` counts what is stored per upstream; `purge --repository` removes only it."""
    keep, drop = os.urandom(200_000), os.urandom(300_000)
    keep_digest = images.push_blob(registry_open, "cache/keep", keep)
    drop_digest = images.push_blob(registry_open, "cache/drop", drop)
    gateway = start_gateway(registry_gateway_config(registry_open))
    await fetch(http, "GET", f"{gateway.url}/v2/cache/keep/blobs/{keep_digest}")
    await fetch(http, "GET", f"{gateway.url}/v2/cache/drop/blobs/{drop_digest}")

    stats = cache_command(gateway, "stats")
    purged = cache_command(gateway, "purge", "--repository", "cache/drop")

    assert stats.returncode == 0
    assert f"{registry_open.host}: 2 entries" in stats.stdout
    assert str(len(keep) + len(drop)) in stats.stdout
    assert purged.returncode == 0 and "purged 1 entries" in purged.stdout
    assert stored_files(gateway, drop_digest) == [] and stored_files(gateway, keep_digest)


async def test_unusable_cache_dir_fails_readiness_but_pulls_still_work(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:  # fmt: skip
    """cache.dir that cannot be created: /readyz says why (503), blobs stream through uncached."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file")
    data = os.urandom(100_000)
    digest = images.push_blob(registry_open, "cache/unusable", data)
    gateway = start_gateway({**registry_gateway_config(registry_open),
                             "cache": {"dir": str(blocker / "cache")}})  # fmt: skip

    ready = await fetch(http, "GET", f"{gateway.url}/readyz")
    blob = await fetch(http, "GET", f"{gateway.url}/v2/cache/unusable/blobs/{digest}")

    assert ready.status == 503
    assert ready.json()["checks"]["cache"].startswith("cache store unusable")
    assert (blob.status, blob.body) == (200, data)
