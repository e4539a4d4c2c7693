"""Graceful shutdown of a real gateway process while a slow blob stream is in flight.

SIGTERM (and SIGINT) stop the listener at once, turn /readyz 503 at once, let the stream
finish within shutdown_grace and exit 0; a second signal exits at once; a stream longer than
shutdown_grace is cut when the grace runs out and the process still exits 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.components.ports import free_port
from tests.gateway_process import GatewayProcess
from tests.ops.upstream import SlowUpstream

EXIT_TIMEOUT = 15.0


@pytest.fixture
def stoppables() -> Iterator[list[Any]]:
    """Processes a test started; stopped by PID afterwards, whatever happened."""
    started: list[Any] = []
    yield started
    for component in reversed(started):
        component.stop()


def start(
    tmp_path: Path, stoppables: list[Any], *, grace: float, chunks: int, delay: float
) -> tuple[SlowUpstream, GatewayProcess, str]:
    """A slow upstream, and a gateway in front of it with a separate metrics listener."""
    upstream = SlowUpstream.start(tmp_path / "upstream", chunks=chunks, delay=delay)
    stoppables.append(upstream)
    metrics = f"127.0.0.1:{free_port()}"
    config = {
        "metrics": {"path": "/metrics", "listen": metrics},
        "shutdown_grace": grace,
        "routing": {"default": upstream.host},
        "upstreams": {upstream.host: {"url": upstream.url}},
    }
    gateway = GatewayProcess.start(tmp_path / "gateway", config)
    stoppables.append(gateway)
    return upstream, gateway, metrics


def blob_url(gateway: GatewayProcess, upstream: SlowUpstream) -> str:
    return f"{gateway.url}/v2/library/slow/blobs/{upstream.blob_digest}"


async def wait_for(condition: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.02)
    return False


async def readyz(session: aiohttp.ClientSession, metrics: str) -> tuple[int, dict[str, Any]]:
    async with session.get(f"http://{metrics}/readyz") as response:
        return response.status, await response.json()


def refuses_connections(gateway: GatewayProcess) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


async def exit_code(gateway: GatewayProcess, timeout: float = EXIT_TIMEOUT) -> int:
    return await asyncio.to_thread(gateway.process.popen.wait, timeout)


def events(gateway: GatewayProcess) -> list[str]:
    return [line["event"] for line in gateway.log_lines()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_drains_the_stream_in_flight_and_exits_0(
    tmp_path: Path, stoppables: list[Any], signum: signal.Signals
) -> None:
    """The stream completes byte-exact after the signal; readiness and the listener go at once."""
    upstream, gateway, metrics = start(tmp_path, stoppables, grace=20, chunks=20, delay=0.1)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        assert (await readyz(session, metrics))[0] == 200
        async with session.get(blob_url(gateway, upstream)) as response:
            assert response.status == 200
            body = bytearray(await response.content.readany())
            signalled = time.monotonic()
            gateway.signal(signum)

            async def draining() -> bool:
                status, report = await readyz(session, metrics)
                return status == 503 and report["checks"]["draining"] == "draining"

            assert await wait_for(draining), "/readyz did not turn 503 after the signal"
            assert await wait_for(lambda: asyncio.to_thread(refuses_connections, gateway)), (
                "the pull listener still accepts connections"
            )
            body += await response.content.read()
        assert bytes(body) == upstream.blob
        assert f"sha256:{hashlib.sha256(body).hexdigest()}" == upstream.blob_digest
    assert await exit_code(gateway) == 0
    assert time.monotonic() - signalled < 20
    lines = gateway.log_lines()
    order = [line["event"] for line in lines]
    assert order.index("shutdown_requested") < order.index("gateway_stopped")
    [requested] = [line for line in lines if line["event"] == "shutdown_requested"]
    assert requested["signal"] == signum.name
    [blob] = [
        line for line in lines if line["event"] == "request_completed" and line["route"] == "blob"
    ]
    assert (blob["status"], blob["bytes"]) == (200, len(upstream.blob))
    assert order.index("request_completed") < order.index("gateway_stopped")


async def test_second_signal_exits_at_once(tmp_path: Path, stoppables: list[Any]) -> None:
    """A second SIGTERM during the drain ends the process immediately, cutting the stream."""
    upstream, gateway, metrics = start(tmp_path, stoppables, grace=30, chunks=40, delay=0.25)
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(blob_url(gateway, upstream)) as response,
    ):
        received = len(await response.content.readany())
        gateway.signal(signal.SIGTERM)
        assert await wait_for(lambda: _is_draining(session, metrics))
        signalled = time.monotonic()
        gateway.signal(signal.SIGTERM)
        assert await exit_code(gateway, timeout=5) == 128 + signal.SIGTERM
        assert time.monotonic() - signalled < 3
        with pytest.raises(aiohttp.ClientPayloadError):
            received += len(await response.content.read())
    assert received < len(upstream.blob)


async def test_stream_longer_than_grace_is_cut_and_exit_is_0(
    tmp_path: Path, stoppables: list[Any]
) -> None:
    """After shutdown_grace the stream is cancelled (never silently truncated) and exit is 0."""
    upstream, gateway, _metrics = start(tmp_path, stoppables, grace=1, chunks=30, delay=0.2)
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(blob_url(gateway, upstream)) as response,
    ):
        received = len(await response.content.readany())
        signalled = time.monotonic()
        gateway.signal(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientPayloadError):
            received += len(await response.content.read())
    assert received < len(upstream.blob)
    assert await exit_code(gateway) == 0
    assert time.monotonic() - signalled < 4
    lines = gateway.log_lines()
    assert "shutdown_grace_expired" in events(gateway)
    assert "gateway_stopped" in events(gateway)
    [blob] = [
        line for line in lines if line["event"] == "request_completed" and line["route"] == "blob"
    ]
    assert (blob["status"], blob["error"]) == (503, "cancelled at shutdown")


async def _is_draining(session: aiohttp.ClientSession, metrics: str) -> bool:
    return (await readyz(session, metrics))[0] == 503
