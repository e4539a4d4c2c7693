"""Large bodies socket to socket: big reads into one reused buffer, below aiohttp's parser.

When both legs are plain TCP and the upstream sent a ``Content-Length``, the rest of a large
body is read straight from the upstream socket into a reused 2 MiB buffer and written to the
caller's socket by a worker thread (blocking calls release the GIL and wait in the kernel,
which beat the same loop on the event loop by ~5%). aiohttp's per-chunk machinery (parser
callbacks, StreamReader queues, ``bytes`` joins) held the plain relay near 0.3x of direct;
a ``splice(2)`` variant measured 0.45x on loopback. ``bench/`` measures this path.

Protocol of the hand-over, so no byte is reordered or lost:
1. the caller already received the headers and every byte aiohttp had buffered, written
   through aiohttp with the write buffer limits at zero, so the transport buffer is empty;
2. the upstream transport stops reading right after its buffer was taken (no await in
   between), so the kernel socket holds the rest of the body;
3. exactly the remaining length is moved, with the idle read timeout on every wait;
4. the upstream connection is closed afterwards (aiohttp's parser no longer knows where it is).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CHUNK_SIZE = 2 << 20
_TICK = 0.2  # seconds a blocking upstream read waits before handing on what it has
MIN_PASSTHROUGH_BYTES = 1 << 20


class BodyTruncated(Exception):
    """The upstream closed before sending the announced length."""


class BodyStalled(Exception):
    """Neither side made progress for the idle timeout."""


def plain_socket(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """The socket under a plain (non-TLS) TCP transport, else None."""
    if transport is None or transport.is_closing():
        return None
    if transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return sock  # type: ignore[no-any-return]


def _pump(
    source: socket.socket, sink: socket.socket, length: int, idle: float, progress: list[int]
) -> int:
    """Blocking copy in a worker thread; the GIL is released inside every recv/send.

    ``progress[0]`` grows by every byte delivered, so an aborted copy still reports them.
    Upstream read errors become BodyTruncated; caller write errors stay OSError.
    """
    buffer = memoryview(bytearray(min(CHUNK_SIZE, length)))
    remaining = length
    # The caller's socket: a timeout keeps its descriptor non-blocking and waits in poll(2),
    # so the event loop's transport, which shares the description, is unaffected.
    sink.settimeout(idle)
    # The upstream socket is ours alone now (its transport is paused and is closed after):
    # blocking reads fill the whole buffer in one call (MSG_WAITALL) on a fast upstream, and
    # a short kernel timeout hands on whatever arrived, so a slow one is still relayed
    # within a fraction of a second; idle time is counted across those ticks.
    tick = min(idle, _TICK)
    source.setblocking(True)
    source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                      struct.pack("ll", int(tick), int((tick % 1) * 1e6)))  # fmt: skip
    waited = 0.0
    try:
        while remaining:
            try:
                count = source.recv_into(
                    buffer[: min(remaining, len(buffer))], 0, socket.MSG_WAITALL
                )
            except BlockingIOError:  # a tick passed with nothing read
                waited += tick
                if waited >= idle:
                    raise BodyStalled(f"no progress for {idle:g}s") from None
                continue
            except OSError as exc:
                raise BodyTruncated(f"upstream read failed: {exc.strerror or exc}") from exc
            waited = 0.0
            if count == 0:
                raise BodyTruncated(f"upstream closed after {length - remaining} of {length}")
            sink.sendall(buffer[:count])
            remaining -= count
            progress[0] += count
    except TimeoutError as exc:
        raise BodyStalled(f"no progress for {idle:g}s") from exc
    finally:
        buffer.release()
    return length


class Passthrough:
    """Runs socket-to-socket copies on a small dedicated thread pool."""

    def __init__(self, max_streams: int = 64) -> None:
        self._executor = ThreadPoolExecutor(max_streams, thread_name_prefix="passthrough")
        self._max = max_streams
        self._active = 0

    def has_capacity(self) -> bool:
        """False when every worker is busy: the caller then streams on the event loop."""
        return self._active < self._max

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def copy_exact(
        self,
        source: socket.socket,
        sink: socket.socket,
        length: int,
        idle: float,
        progress: list[int],
    ) -> int:
        """Move exactly ``length`` bytes; raise BodyTruncated, BodyStalled or OSError."""
        loop = asyncio.get_running_loop()
        # Duplicate descriptors of the same sockets are ours to block on and to close.
        src = socket.socket(fileno=os.dup(source.fileno()))
        dst = socket.socket(fileno=os.dup(sink.fileno()))
        future = loop.run_in_executor(self._executor, _pump, src, dst, length, idle, progress)
        self._active += 1
        future.add_done_callback(self._finished)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Unblock the worker at once: shutting the sockets down ends its recv/send.
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(BaseException):
                await future
            raise
        finally:
            if future.done():
                src.close()
                dst.close()
            else:
                future.add_done_callback(lambda _f: _close(src, dst))

    def _finished(self, _future: object) -> None:
        self._active -= 1


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        sock.close()


class WriteBufferFlushed:
    """Context: make aiohttp's drain wait until the caller's transport buffer is empty."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def __enter__(self) -> None:
        self._transport.set_write_buffer_limits(high=0)

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._transport.set_write_buffer_limits()
