"""Cache fills against a loopback upstream: one fetch per digest, followers, failures, hang-ups.

The upstream is a small aiohttp app because no real registry can be slow, die mid-blob or send
wrong bytes on demand. Blobs are generated chunk by chunk (never held whole in memory); the
app counts the GETs it receives.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.gateway_process import GatewayProcess
from tests.integration.harness import (
    GatewayFactory,
    gateway_config,
    sample,
    scrape,
    upstream,
)
from tests.integration.loopback import ServerFactory, authority, base_url

MIB = 1 << 20


def chunks(size: int, seed: bytes) -> Iterator[bytes]:
    """A deterministic body of `size` bytes in 1 MiB chunks, each different."""
    block = hashlib.sha256(seed).digest() * (MIB // 32)
    for index, offset in enumerate(range(0, size, MIB)):
        yield index.to_bytes(8, "big") + block[8 : min(MIB, size - offset)]


def digest_of(size: int, seed: bytes) -> str:
    hasher = hashlib.sha256()
    for chunk in chunks(size, seed):
        hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


@dataclass
class BlobUpstream:
    """Serves one blob; `modes` says what each successive GET does: ok, wrong, die."""

    size: int
    seed: bytes
    delay: float = 0.0  # seconds between 1 MiB chunks
    modes: list[str] = field(default_factory=list)
    gets: int = 0
    heads: int = 0
    finished_at: float | None = None

    @property
    def digest(self) -> str:
        return digest_of(self.size, self.seed)

    def app(self) -> web.Application:
        async def blob(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.content_length = self.size
            if request.method == "HEAD":
                self.heads += 1
                await response.prepare(request)
                return response
            self.gets += 1
            mode = self.modes.pop(0) if self.modes else "ok"
            seed = b"wrong" if mode == "wrong" else self.seed
            await response.prepare(request)
            for index, chunk in enumerate(chunks(self.size, seed)):
                if mode == "die" and index * MIB >= self.size // 2:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                await response.write(chunk)
                if self.delay:
                    await asyncio.sleep(self.delay)
            self.finished_at = time.monotonic()
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_route("*", "/v2/{name:.+}/blobs/{digest}", blob)
        return app


async def start(
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    blob: BlobUpstream,
    **cache: object,
) -> GatewayProcess:
    server = await aiohttp_server(blob.app())
    key = authority(server)
    return start_gateway(
        gateway_config({key: upstream(base_url(server))}, default=key, cache=dict(cache))
    )


@dataclass
class Download:
    status: int
    digest: str | None  # None when the body failed
    size: int
    first_byte_at: float | None
    x_cache: str | None


async def download(http: aiohttp.ClientSession, url: str) -> Download:
    hasher = hashlib.sha256()
    size, first = 0, None
    async with http.get(url) as response:
        try:
            async for chunk in response.content.iter_chunked(MIB):
                if first is None:
                    first = time.monotonic()
                hasher.update(chunk)
                size += len(chunk)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            return Download(response.status, None, size, first, response.headers.get("X-Cache"))
        return Download(
            response.status, f"sha256:{hasher.hexdigest()}", size, first,
            response.headers.get("X-Cache"),
        )  # fmt: skip


async def log_event(gateway: GatewayProcess, event: str, timeout: float = 30) -> None:
    """Wait for a gateway log line without blocking the loop the upstream app runs in."""
    deadline = time.monotonic() + timeout
    while not any(line.get("event") == event for line in gateway.log_lines()):
        assert time.monotonic() < deadline, f"no {event} log line"
        await asyncio.sleep(0.1)


def published(gateway: GatewayProcess, digest: str) -> list[Path]:
    root = gateway.workdir / "cache"
    return [p for p in root.rglob(digest.split(":")[1]) if "blobs" in p.parts]


def temp_files(gateway: GatewayProcess) -> list[Path]:
    return list((gateway.workdir / "cache" / "_tmp").iterdir())


async def test_twenty_cold_callers_cause_one_upstream_get_and_stream_as_bytes_arrive(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """20 cold GETs of a 200 MiB blob: one upstream GET, every sha256 right, early bytes."""
    blob = BlobUpstream(200 * MIB, b"twenty", delay=0.01)
    gateway = await start(aiohttp_server, start_gateway, blob)
    url = f"{gateway.url}/v2/team/big/blobs/{blob.digest}"

    leader = asyncio.create_task(download(http, url))
    while blob.gets == 0:
        await asyncio.sleep(0.01)
    followers = [asyncio.create_task(download(http, url)) for _ in range(19)]
    results = [await leader, *await asyncio.gather(*followers)]

    assert blob.gets == 1
    assert [r.status for r in results] == [200] * 20
    assert {r.digest for r in results} == {blob.digest}
    assert blob.finished_at is not None
    early = [r for r in results[1:] if r.first_byte_at and r.first_byte_at < blob.finished_at]
    assert early, "no follower got a byte before the upstream finished"
    again = await download(http, url)
    assert (again.digest, again.x_cache, blob.gets) == (blob.digest, "HIT", 1)


async def test_wrong_bytes_are_never_published_and_the_next_get_refetches(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Bytes that hash wrong: downloads fail, nothing stored, counted, refetched next time."""
    blob = BlobUpstream(8 * MIB, b"integrity", delay=0.15, modes=["wrong"])
    gateway = await start(aiohttp_server, start_gateway, blob)
    url = f"{gateway.url}/v2/team/app/blobs/{blob.digest}"

    leader = asyncio.create_task(download(http, url))
    while blob.gets == 0:
        await asyncio.sleep(0.01)
    followers = await asyncio.gather(*(download(http, url) for _ in range(2)))
    first = [await leader, *followers]

    assert [d.digest for d in first] == [None, None, None]
    assert all(d.size < blob.size for d in first)  # the last byte is never handed out
    assert published(gateway, blob.digest) == []
    metrics = await scrape(http, gateway.url)
    assert sample(metrics, "registry_gateway_cache_integrity_failures_total") == 1
    retry = await download(http, url)
    assert (retry.digest, blob.gets) == (blob.digest, 2)
    assert len(published(gateway, blob.digest)) == 1  # in place before the last byte went out
    # Until its fsync completed, a published file is named by a _tmp/<name>.unsynced marker.
    await log_event(gateway, "cache_filled")
    assert temp_files(gateway) == []


async def test_upstream_dying_mid_blob_fails_the_callers_and_publishes_nothing(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """An upstream that drops the connection halfway: failed downloads, no file, next GET works."""
    blob = BlobUpstream(8 * MIB, b"dying", modes=["die"])
    gateway = await start(aiohttp_server, start_gateway, blob)
    url = f"{gateway.url}/v2/team/app/blobs/{blob.digest}"

    failed = await download(http, url)

    assert failed.digest is None and failed.size < blob.size
    assert published(gateway, blob.digest) == []
    ok = await download(http, url)
    assert (ok.digest, blob.gets) == (blob.digest, 2)
    hit = await download(http, url)
    assert (hit.digest, hit.x_cache, blob.gets) == (blob.digest, "HIT", 2)
    assert temp_files(gateway) == []


async def test_fill_completes_after_the_leader_hangs_up(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """The caller that started a fill hangs up at 10 %: the fill finishes, the next GET hits."""
    blob = BlobUpstream(40 * MIB, b"hangup", delay=0.02)
    gateway = await start(aiohttp_server, start_gateway, blob)
    url = f"{gateway.url}/v2/team/app/blobs/{blob.digest}"

    async with http.get(url) as response:
        received = 0
        async for chunk in response.content.iter_chunked(MIB):
            received += len(chunk)
            if received >= blob.size // 10:
                break
    assert received < blob.size

    await log_event(gateway, "cache_filled")
    hit = await download(http, url)
    assert (hit.digest, hit.x_cache, blob.gets) == (blob.digest, "HIT", 1)
