"""Large bodies socket to socket: big reads into reused buffers, below aiohttp's parser.

When both legs are plain TCP and the upstream sent a ``Content-Length``, the rest of a large
body is read straight from the upstream socket into three reused 2 MiB buffers by one worker
thread and written to the caller's socket by another, so reading and writing overlap
(blocking calls release the GIL and wait in the kernel). aiohttp's per-chunk machinery
(parser callbacks, StreamReader queues, ``bytes`` joins) held the plain relay near 0.3x of
direct; ``splice(2)`` through a pipe measured 0.45x on loopback; one thread alternating reads
and writes ~0.57-0.63x; this overlap ~0.63-0.67x. ``bench/`` measures this path.

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
import functools
import os
import queue
import socket
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CHUNK_SIZE = 2 << 20
_BUFFERS = 3  # per overlapped stream: one being filled, one being sent, one spare
_OVERLAP_STREAMS = os.cpu_count() or 2
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


def _tune(source: socket.socket, sink: socket.socket, idle: float) -> float:
    """Socket modes for the copy; returns the read tick."""
    # The caller's socket: a timeout keeps its descriptor non-blocking and waits in poll(2),
    # so the event loop's transport, which shares the description, is unaffected.
    sink.settimeout(idle)
    # The upstream socket is ours alone now (its transport is paused and is closed after):
    # blocking reads fill a whole buffer in one call (MSG_WAITALL) on a fast upstream, and a
    # short kernel timeout hands on whatever a slow one sent, so callers see steady progress.
    tick = min(idle, _TICK)
    source.setblocking(True)
    source.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                      struct.pack("ll", int(tick), int((tick % 1) * 1e6)))  # fmt: skip
    return tick


def _read(
    source: socket.socket,
    length: int,
    idle: float,
    free: queue.Queue[memoryview],
    deliver: Callable[[memoryview, int], None],
) -> None:
    """Fill free buffers from the upstream and hand each to ``deliver``; idle counted per tick."""
    tick = min(idle, _TICK)
    remaining, waited = length, 0.0
    while remaining:
        view = free.get()
        if not view:
            return  # the writer failed; it holds the error
        try:
            count = source.recv_into(view[: min(remaining, len(view))], 0, socket.MSG_WAITALL)
        except BlockingIOError:  # a tick passed with nothing read
            free.put(view)
            waited += tick
            if waited >= idle:
                raise BodyStalled(f"no progress for {idle:g}s") from None
            continue
        except OSError as exc:
            raise BodyTruncated(f"upstream read failed: {exc.strerror or exc}") from exc
        if count == 0:
            raise BodyTruncated(f"upstream closed after {length - remaining} of {length}")
        waited = 0.0
        deliver(view, count)
        remaining -= count


def _write(
    sink: socket.socket,
    free: queue.Queue[memoryview],
    filled: queue.Queue[tuple[memoryview, int] | None],
    progress: Callable[[int], None],
) -> BaseException | None:
    """Send queued buffers to the caller; return the error that stopped it, if any."""
    try:
        while (item := filled.get()) is not None:
            view, count = item
            sink.sendall(view[:count])
            progress(count)
            free.put(view)
    except BaseException as exc:
        free.put(memoryview(b""))  # wake the reader: nothing more will be sent
        return exc
    return None


class Passthrough:
    """Runs socket-to-socket copies on two small dedicated thread pools."""

    def __init__(self, max_streams: int = 64) -> None:
        # Each stream has a reader and a writer thread, each from its own pool, so a writer
        # can never wait in a queue behind the readers that wait for it.
        self._readers = ThreadPoolExecutor(max_streams, thread_name_prefix="passthrough-read")
        self._writers = ThreadPoolExecutor(max_streams, thread_name_prefix="passthrough-write")
        self._max = max_streams
        self._active = 0

    def has_capacity(self) -> bool:
        """False when every worker is busy: the caller then streams on the event loop."""
        return self._active < self._max

    def close(self) -> None:
        self._readers.shutdown(wait=False, cancel_futures=True)
        self._writers.shutdown(wait=False, cancel_futures=True)

    def _pump(
        self, source: socket.socket, sink: socket.socket, length: int, idle: float,
        progress: Callable[[int], None], overlap: bool,
    ) -> int:  # fmt: skip
        """Copy ``length`` bytes; with ``overlap`` one buffer is sent while the next fills.

        ``progress`` is called with every count of bytes delivered, so an aborted copy still
        reports them.
        Upstream failures raise BodyTruncated or BodyStalled; caller failures stay OSError.
        """
        _tune(source, sink, idle)
        free: queue.Queue[memoryview] = queue.Queue()
        for _ in range(_BUFFERS if overlap else 1):
            free.put(memoryview(bytearray(min(CHUNK_SIZE, length))))
        if not overlap:

            def send(view: memoryview, count: int) -> None:
                sink.sendall(view[:count])
                progress(count)
                free.put(view)

            _read(source, length, idle, free, send)
            return length
        filled: queue.Queue[tuple[memoryview, int] | None] = queue.Queue()
        writer = self._writers.submit(_write, sink, free, filled, progress)
        try:
            _read(source, length, idle, free, lambda view, count: filled.put((view, count)))
        except BaseException:
            filled.put(None)
            caller_error = writer.result()
            if caller_error is not None:
                raise caller_error from None  # the caller left first: that is the story
            raise
        filled.put(None)
        caller_error = writer.result()
        if caller_error is not None:
            raise caller_error
        return length

    async def copy_exact(
        self,
        source: socket.socket,
        sink: socket.socket,
        length: int,
        idle: float,
        progress: Callable[[int], None],
    ) -> int:
        """Move exactly ``length`` bytes; raise BodyTruncated, BodyStalled or OSError."""
        loop = asyncio.get_running_loop()
        # Duplicate descriptors of the same sockets are ours to block on and to close.
        src = socket.socket(fileno=os.dup(source.fileno()))
        dst = socket.socket(fileno=os.dup(sink.fileno()))
        # Overlapping read and write pays while streams are few; with more streams than
        # cores the extra threads only contend (bench/: 8 streams ran slower overlapped).
        overlap = self._active < _OVERLAP_STREAMS
        pump = functools.partial(self._pump, src, dst, length, idle, progress, overlap)
        future = loop.run_in_executor(self._readers, pump)
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
