"""Blob bodies that go wrong mid-stream, on both relay paths.

Bodies under 1 MiB (or without Content-Length) take the streaming relay; a large body with a
Content-Length takes the socket passthrough (gateway/upstream/passthrough.py). Whatever the
path, a stalled or truncated upstream body must abort the caller's connection (a short body
must never look complete), and a caller that goes away must stop the upstream read.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.gateway_process import GatewayProcess
from tests.integration.harness import GatewayFactory, gateway_config, logged, upstream
from tests.integration.loopback import (
    BLOB_DIGEST,
    PATTERN,
    ServerFactory,
    StreamLog,
    authority,
    base_url,
    body_bytes,
)

KIB, MIB = 1 << 10, 1 << 20
READ_TIMEOUT = 1  # timeouts.read: idle seconds between upstream body chunks
# (announced Content-Length, bytes actually sent) per size class.
SIZES = {
    "small-streamed": (256 * KIB, 64 * KIB),
    "large-passthrough": (4 * MIB, 3 * MIB // 2),
}
DISCONNECT_TOTAL = 1 << 30
CALLER_READS = 4 * MIB


def peer_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def stalling_handler_app(announced: int, sent: int, log: StreamLog) -> web.Application:
    """Announce `announced` bytes, send `sent`, then go silent until the gateway hangs up."""

    async def blob(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = announced
        await response.prepare(request)
        await response.write(body_bytes(sent))
        log.sent, log.started = sent, time.monotonic()
        deadline = time.monotonic() + 30
        try:
            while not peer_gone(request) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            log.mark_closed()  # TestServer cancels handlers whose connection is lost
            raise
        if peer_gone(request):
            log.mark_closed()
        return response

    app = web.Application()
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob)
    return app


def truncating_handler_app(announced: int, sent: int, log: StreamLog) -> web.Application:
    """Announce `announced` bytes, send `sent`, then close the connection."""

    async def blob(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = announced
        await response.prepare(request)
        await response.write(body_bytes(sent))
        log.sent, log.started = sent, time.monotonic()
        assert request.transport is not None
        request.transport.close()  # flushes what was written, then FIN
        return response

    app = web.Application()
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob)
    return app


async def gateway_for(
    aiohttp_server: ServerFactory, app: web.Application, start_gateway: GatewayFactory
) -> tuple[TestServer, GatewayProcess]:
    server = await aiohttp_server(app)
    key = authority(server)
    # These tests are about the relay paths: uncached (the cache's fills have their own tests).
    gateway = start_gateway(
        gateway_config(
            {key: upstream(base_url(server))},
            default=key,
            timeouts={"read": READ_TIMEOUT},
            cache={"enabled": False},
        )
    )
    return server, gateway


async def read_until_failure(
    http: aiohttp.ClientSession, url: str
) -> tuple[int, int, BaseException | None, float]:
    """GET `url`, read the body; return (status, bytes read, the error or None, seconds)."""
    started = time.monotonic()
    received = 0
    error: BaseException | None = None
    async with http.get(url) as response:
        status = response.status
        try:
            async for chunk in response.content.iter_any():
                received += len(chunk)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            error = exc
    return status, received, error, time.monotonic() - started


def relay_aborted_logged(gateway: GatewayProcess) -> bool:
    lines = logged(
        gateway, lambda lines: any(line.get("event") == "relay_aborted" for line in lines)
    )
    return any(line.get("event") == "relay_aborted" for line in lines)


@pytest.mark.parametrize("size", list(SIZES))
async def test_stalled_upstream_body_aborts_the_caller_within_seconds(
    size: str,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """An upstream that stops sending mid-body (timeouts.read=1) aborts the caller's connection."""
    announced, sent = SIZES[size]
    log = StreamLog()
    _server, gateway = await gateway_for(
        aiohttp_server, stalling_handler_app(announced, sent, log), start_gateway
    )

    status, received, error, elapsed = await read_until_failure(
        http, f"{gateway.url}/v2/team/app/blobs/{BLOB_DIGEST}"
    )

    assert status == 200
    assert isinstance(error, aiohttp.ClientPayloadError), (error, received)
    assert received < announced
    assert elapsed < READ_TIMEOUT + 4, f"caller waited {elapsed:.1f}s"
    for _ in range(40):
        if log.peer_closed_at is not None:
            break
        await asyncio.sleep(0.05)
    assert log.peer_closed_at is not None, "the gateway kept the stalled upstream connection"
    assert relay_aborted_logged(gateway)


@pytest.mark.parametrize("size", list(SIZES))
async def test_truncated_upstream_body_is_an_error_for_the_caller(
    size: str,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """An upstream that closes after half its Content-Length makes the caller's read fail."""
    announced, _ = SIZES[size]
    log = StreamLog()
    _server, gateway = await gateway_for(
        aiohttp_server, truncating_handler_app(announced, announced // 2, log), start_gateway
    )

    status, received, error, elapsed = await read_until_failure(
        http, f"{gateway.url}/v2/team/app/blobs/{BLOB_DIGEST}"
    )

    assert status == 200
    assert isinstance(error, aiohttp.ClientPayloadError), (error, received)
    assert received <= announced // 2
    assert elapsed < 5
    assert relay_aborted_logged(gateway)


def endless_handler_app(*, chunked: bool, log: StreamLog) -> web.Application:
    """Stream up to 1 GiB as fast as the reader takes it; note when the reader hangs up."""

    async def blob(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = DISCONNECT_TOTAL
        await response.prepare(request)
        log.started = time.monotonic()
        try:
            while log.sent < DISCONNECT_TOTAL:
                await response.write(PATTERN)
                log.sent += len(PATTERN)
        except ConnectionError:
            log.mark_closed()
        except asyncio.CancelledError:
            log.mark_closed()  # TestServer cancels handlers whose connection is lost
            raise
        return response

    app = web.Application()
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob)
    return app


@dataclass(frozen=True)
class Disconnect:
    """One caller that hung up mid-blob: what it read, what the upstream app saw, the log line."""

    received: int
    hung_up: float
    upstream: StreamLog
    log_line: dict[str, Any] | None
    relay_aborted: bool


async def disconnect_midway(
    chunked: bool,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> Disconnect:
    """Read 4 MiB of a 1 GiB blob, hang up, wait (≤5 s) for the upstream and the log to notice."""
    log = StreamLog()
    _server, gateway = await gateway_for(
        aiohttp_server, endless_handler_app(chunked=chunked, log=log), start_gateway
    )

    received = 0
    async with http.get(f"{gateway.url}/v2/team/app/blobs/{BLOB_DIGEST}") as response:
        assert response.status == 200
        async for chunk in response.content.iter_chunked(256 * KIB):
            received += len(chunk)
            if received >= CALLER_READS:
                break
        response.close()
    hung_up = time.monotonic()
    line = None
    for _ in range(100):
        lines = [
            entry for entry in gateway.log_lines()
            if entry.get("event") == "request_completed" and entry.get("route") == "blob"
        ]  # fmt: skip
        line = lines[-1] if lines else None
        if log.peer_closed_at is not None and line is not None:
            break
        await asyncio.sleep(0.05)
    aborted = any(entry.get("event") == "relay_aborted" for entry in gateway.log_lines())
    return Disconnect(received, hung_up, log, line, aborted)


DISCONNECT_PATHS = pytest.mark.parametrize(
    "chunked", [True, False], ids=["chunked-streamed", "length-passthrough"]
)


@DISCONNECT_PATHS
async def test_caller_disconnect_stops_the_upstream_read_promptly(
    chunked: bool,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """A caller that hangs up after 4 MiB of a 1 GiB blob makes the gateway drop the upstream."""
    result = await disconnect_midway(chunked, aiohttp_server, start_gateway, http)

    upstream_log = result.upstream
    assert upstream_log.peer_closed_at is not None, (
        f"upstream still streaming after {upstream_log.sent} bytes"
    )
    assert upstream_log.peer_closed_at - result.hung_up < 5
    assert upstream_log.sent < 256 * MIB, (
        f"upstream sent {upstream_log.sent} bytes for a caller that read {result.received}"
    )


@DISCONNECT_PATHS
async def test_caller_disconnect_is_logged_as_the_callers_not_an_upstream_failure(
    chunked: bool,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """A caller hang-up is logged 499 "caller disconnected", never as a 502 upstream failure."""
    # Four hang-ups: where the gateway is (writing or waiting to drain) varies with timing.
    outcomes = []
    for _attempt in range(4):
        result = await disconnect_midway(chunked, aiohttp_server, start_gateway, http)
        assert result.log_line is not None
        outcomes.append(
            (result.log_line["status"], result.log_line.get("error"), result.relay_aborted)
        )

    assert all(status == 499 and not aborted for status, _, aborted in outcomes), outcomes
    assert all("caller disconnected" in str(error) for _, error, _ in outcomes), outcomes


@DISCONNECT_PATHS
async def test_caller_disconnect_log_counts_the_bytes_relayed(
    chunked: bool,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """The request's log line counts at least the body bytes the caller actually received."""
    result = await disconnect_midway(chunked, aiohttp_server, start_gateway, http)

    assert result.log_line is not None
    assert result.log_line["bytes"] >= result.received, (
        f"logged {result.log_line['bytes']} bytes, the caller received {result.received}"
    )


async def test_caller_hanging_up_before_the_response_logs_no_error(
    registry_open: Any, start_gateway: GatewayFactory
) -> None:
    """A caller that closes right after its request gets a quiet 499 line, never a traceback."""
    from tests.components import images
    from tests.integration.harness import registry_gateway_config

    digest = images.push_blob(registry_open, "hangup/blob", b"x" * (8 * MIB))
    gateway = start_gateway(registry_gateway_config(registry_open))
    for _ in range(5):
        _reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(f"GET /v2/hangup/blob/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    for _ in range(100):
        done = [e for e in gateway.log_lines() if e.get("event") == "request_completed"]
        if len(done) >= 6:  # five blob GETs plus the readiness probe at start-up
            break
        await asyncio.sleep(0.05)
    blob_lines = [e for e in done if e.get("route") == "blob"]
    assert len(blob_lines) == 5
    assert all(e["status"] in (200, 499) for e in blob_lines), blob_lines
    assert not [e for e in gateway.log_lines() if e.get("level") in ("error", "critical")]
    assert "Traceback" not in gateway.log_text()


@pytest.mark.parametrize("stage", ["registry", "token-realm"])
async def test_upstream_silent_before_headers_is_504(
    stage: str, aiohttp_server: ServerFactory, start_gateway: GatewayFactory
) -> None:
    """An upstream (or its token service) that never answers gets 504 UNAVAILABLE in time."""
    hung = asyncio.Event()

    async def silent(request: web.Request) -> web.Response:
        await hung.wait()  # never set: the answer never comes
        return web.Response()

    async def challenge(request: web.Request) -> web.Response:
        realm = f"{base_url(server)}/token"
        return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})

    app = web.Application()
    app.router.add_get("/token", silent)
    app.router.add_get("/v2/{tail:.*}", silent if stage == "registry" else challenge)
    server = await aiohttp_server(app)
    key = authority(server)
    gateway = start_gateway(
        gateway_config(
            {key: upstream(base_url(server))},
            default=key,
            timeouts={"connect": 1, "read": READ_TIMEOUT},
        )
    )
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gateway.url}/v2/team/app/manifests/latest") as response,
    ):
        body = await response.json()
    assert response.status == 504
    assert body["errors"][0]["code"] == "UNAVAILABLE"
    assert time.monotonic() - started < READ_TIMEOUT + 4
    hung.set()


async def test_trickling_upstream_is_relayed_promptly_on_the_passthrough_path(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A slow upstream's bytes reach the caller within a fraction of a second, not in bursts."""
    total, piece, pause = 4 * MIB, 64 * KIB, 0.1

    async def blob(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = total
        await response.prepare(request)
        data = body_bytes(total)
        for offset in range(0, total, piece):
            await response.write(data[offset : offset + piece])
            await asyncio.sleep(pause)
        return response

    app = web.Application()
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob)
    _server, gateway = await gateway_for(aiohttp_server, app, start_gateway)
    arrivals: list[tuple[float, int]] = []
    received = 0
    async with http.get(f"{gateway.url}/v2/team/app/blobs/{BLOB_DIGEST}") as response:
        assert response.status == 200
        async for chunk in response.content.iter_any():
            received += len(chunk)
            arrivals.append((time.monotonic(), received))
    assert received == total
    # 64 pieces 0.1 s apart; the caller must see progress at least every ~0.5 s.
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(arrivals)]
    assert max(gaps) < 0.5, max(gaps)


@pytest.mark.parametrize("passthrough", [True, False], ids=["passthrough-on", "passthrough-off"])
async def test_streaming_passthrough_setting_picks_the_relay_path(
    passthrough: bool,
    registry_open: Any,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """streaming.passthrough decides the large-body path; either way the body is byte-exact."""
    from tests.components import images
    from tests.integration.harness import registry_gateway_config, sha256_digest

    body = body_bytes(6 * MIB + 17)
    digest = images.push_blob(registry_open, "streaming/setting", body)
    config = registry_gateway_config(registry_open)
    config["streaming"] = {"passthrough": passthrough}
    config["cache"] = {"enabled": False}  # the relay path itself, not a cache fill
    gateway = start_gateway(config)

    async with http.get(f"{gateway.url}/v2/streaming/setting/blobs/{digest}") as response:
        received = await response.read()

    assert response.status == 200
    assert sha256_digest(received) == digest
    lines = logged(gateway, lambda ls: any(e.get("route") == "blob" for e in ls))
    line = next(e for e in lines if e.get("route") == "blob")
    assert line["bytes"] == len(body)
    assert line.get("relay") == ("passthrough" if passthrough else None)


@pytest.mark.parametrize("size", [6 * MIB, 200 * KIB], ids=["passthrough", "streamed"])
async def test_bytes_sent_total_includes_a_download_as_soon_as_it_ends(
    size: int, registry_open: Any, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A scrape right after a blob download ends already counts every byte of it."""
    from tests.components import images
    from tests.integration.harness import registry_gateway_config, sample, scrape

    digest = images.push_blob(registry_open, f"streaming/scrape{size}", b"s" * size)
    gateway = start_gateway(registry_gateway_config(registry_open))
    labels = {"upstream": registry_open.host, "route": "blob"}
    for attempt in range(1, 4):
        async with http.get(f"{gateway.url}/v2/streaming/scrape{size}/blobs/{digest}") as got:
            assert len(await got.read()) == size
        counted = sample(await scrape(http, gateway.url), "registry_gateway_bytes_sent_total",
                         **labels)  # fmt: skip
        assert counted == attempt * size
