"""gateway.upstream.passthrough: the socket-to-socket copy and its hand-over from aiohttp.

The copy runs on real loopback TCP sockets (the path needs AF_INET; a Unix socketpair would
be refused by ``plain_socket``). The hand-over tests put ``relay()`` between a real aiohttp
client response and a real aiohttp server response, so an aiohttp upgrade that changes how
bodies are buffered or transports are paused shows up here first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from aiohttp import web

from gateway.metrics import SentBytes
from gateway.upstream import passthrough
from gateway.upstream.relay import Relayed, relay

MiB = 1 << 20


PairFactory = Callable[[], tuple[socket.socket, socket.socket]]


@pytest.fixture
def tcp_pair() -> Iterator[PairFactory]:
    """Makes connected loopback TCP socket pairs; closes them all after the test."""
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        with socket.create_server(("127.0.0.1", 0)) as server:
            near = socket.create_connection(server.getsockname())
            far, _ = server.accept()
        made.extend((near, far))
        return near, far

    yield make
    for sock in made:
        sock.close()


def send_in_thread(sock: socket.socket, data: bytes) -> threading.Thread:
    """Play the upstream: send ``data``; a copy that stops early leaves it blocked until the
    socket closes at teardown, which is not what the test is about."""

    def send() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(data)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def receive(sock: socket.socket, limit: int, into: bytearray) -> None:
    """Read up to ``limit`` bytes (or until the peer closes) into ``into``."""
    while len(into) < limit:
        chunk = sock.recv(min(256 * 1024, limit - len(into)))
        if not chunk:
            return
        into += chunk


@pytest.fixture
def pump() -> Iterator[passthrough.Passthrough]:
    pump = passthrough.Passthrough(max_streams=4)
    yield pump
    pump.close()


async def test_copy_moves_exactly_the_length_and_leaves_the_rest(
    pump: passthrough.Passthrough, tcp_pair: PairFactory
) -> None:
    """Exactly ``length`` bytes reach the sink, in order; what follows stays in the source."""
    upstream_peer, source = tcp_pair()
    sink, caller = tcp_pair()
    body = os.urandom(5 * MiB + 123)
    send_in_thread(upstream_peer, body + b"NEXT RESPONSE")
    received = bytearray()
    reader = threading.Thread(target=receive, args=(caller, len(body), received), daemon=True)
    reader.start()
    counts: list[int] = []

    copied = await pump.copy_exact(source, sink, len(body), 5.0, counts.append)

    await asyncio.to_thread(reader.join, 10)
    assert copied == len(body) == sum(counts)
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    source.settimeout(5)
    assert source.recv(64) == b"NEXT RESPONSE"


async def test_copy_counts_every_byte_the_caller_got_before_hanging_up(
    pump: passthrough.Passthrough, tcp_pair: PairFactory
) -> None:
    """A caller leaving mid-buffer: progress covers at least what it received (no lost sends)."""
    upstream_peer, source = tcp_pair()
    sink, caller = tcp_pair()
    # Small kernel buffers so one 2 MiB buffer cannot be handed over in one send.
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    caller.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    body = os.urandom(8 * MiB)
    send_in_thread(upstream_peer, body)
    received = bytearray()

    def read_some_then_reset() -> None:
        receive(caller, MiB + 4321, received)
        caller.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        caller.close()

    reader = threading.Thread(target=read_some_then_reset, daemon=True)
    reader.start()
    progress = SentBytes()

    with pytest.raises(OSError):
        await pump.copy_exact(source, sink, len(body), 5.0, progress.add)

    await asyncio.to_thread(reader.join, 10)
    assert len(received) == MiB + 4321
    assert progress.total >= len(received)
    assert progress.total < len(body)


async def test_upstream_closing_early_is_truncation(
    pump: passthrough.Passthrough, tcp_pair: PairFactory
) -> None:
    """An upstream that closes before the length is BodyTruncated, with the bytes counted."""
    upstream_peer, source = tcp_pair()
    sink, caller = tcp_pair()
    received = bytearray()
    reader = threading.Thread(target=receive, args=(caller, 4 * MiB, received), daemon=True)
    reader.start()
    upstream_peer.sendall(b"x" * 300_000)
    upstream_peer.close()
    counts: list[int] = []

    with pytest.raises(passthrough.BodyTruncated):
        await pump.copy_exact(source, sink, 4 * MiB, 5.0, counts.append)

    assert sum(counts) == 300_000


# --- the hand-over inside relay() ---------------------------------------------------------


async def raw_upstream(body: bytes, *, chunked: bool = False) -> tuple[asyncio.Server, str]:
    """An HTTP/1.1 upstream on loopback that sends the headers and a first piece, then the rest.

    The pause makes aiohttp hold part of the body in its buffer while the rest is still in
    the kernel: exactly the state the hand-over must stitch together without reordering.
    """

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if chunked:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(body), MiB):
                piece = body[start : start + MiB]
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            writer.write(b"0\r\n\r\n")
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            writer.write(head + body[:100_000])
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(body[100_000:])
        await writer.drain()
        await reader.read()  # until the gateway side closes
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/blob"


async def relay_through(
    body: bytes, pump: passthrough.Passthrough | None, *, chunked: bool = False
) -> tuple[bytes, Relayed, SentBytes]:
    """Fetch ``body`` from a raw upstream through ``relay()`` in a real aiohttp server."""
    upstream, url = await raw_upstream(body, chunked=chunked)
    outcome: asyncio.Future[tuple[Relayed, SentBytes]] = asyncio.get_running_loop().create_future()
    async with aiohttp.ClientSession(auto_decompress=False) as upstream_session:

        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                response = await upstream_session.get(url)
                sent = SentBytes()
                relayed = await relay(request, response, sent=sent, pump=pump)
            except BaseException as exc:  # the test's failure, not a 10 s wait for nothing
                outcome.set_exception(exc)
                raise
            outcome.set_result((relayed, sent))
            return relayed.response

        app = web.Application()
        app.router.add_get("/blob", handler)
        # As `serve` runs it: a caller hanging up does not cancel the handler (TestServer
        # would, and the caller can hold the last byte before relay() has returned).
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            host, port = runner.addresses[0][:2]
            async with (
                aiohttp.ClientSession() as caller,
                caller.get(f"http://{host}:{port}/blob") as answer,
            ):
                received = await answer.read()
            relayed = await asyncio.wait_for(outcome, 10)
        finally:
            await runner.cleanup()
            upstream.close()
    return received, *relayed


async def test_hand_over_keeps_every_byte_in_order(pump: passthrough.Passthrough) -> None:
    """aiohttp's buffered bytes go first, then the socket copy: the caller gets the exact body."""
    body = os.urandom(4 * MiB + 7)

    received, relayed, sent = await relay_through(body, pump)

    assert relayed.passthrough
    assert relayed.aborted is None
    assert hashlib.sha256(received).digest() == hashlib.sha256(body).digest()
    assert sent.total == len(body)


@pytest.mark.parametrize(("with_pump", "chunked"), [(False, False), (True, True)])
async def test_without_a_pump_or_a_length_the_body_streams_through_aiohttp(
    with_pump: bool, chunked: bool, pump: passthrough.Passthrough
) -> None:
    """No pump (relay.passthrough off) or a chunked body: aiohttp streams it, byte-exact."""
    body = os.urandom(3 * MiB + 1)

    received, relayed, sent = await relay_through(body, pump if with_pump else None,
                                                  chunked=chunked)  # fmt: skip

    assert not relayed.passthrough
    assert received == body
    assert sent.total == len(body)
