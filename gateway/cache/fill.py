"""A fill: one upstream fetch of one digest, written to the store and followed by every caller.

The fill runs as its own task, detached from the caller that started it: every caller (that
one included) is a follower of the bytes as they arrive. Upstream chunks are kept in a small
in-memory window that caught-up followers are served from; the store's writer gets them in
batches of :data:`BATCH` bytes (one worker-thread hop writes and hashes a batch, while the loop
keeps receiving the next one), and a follower that fell behind the window reads the temp file.

Followers are never handed the last byte before the digest verified; when the bytes turn out
wrong, or the upstream fails, every follower gets :class:`FillFailed` and aborts its
connection. Once the digest matched, the last byte goes out while the store makes the object
durable and publishes it (fsync, rename); a request arriving in between waits for that
publication (:meth:`Fill.settled`) and is then a hit. While no follower is left, the fill may
go on for ``fill_timeout``.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from ..log import get_logger
from .store import ContentKey, DigestMismatch, Entry, Writer

log = get_logger(__name__)

READ_CHUNK = 1 << 20
# Bytes handed to the writer at once: one thread hop per batch instead of per upstream chunk.
BATCH = 1 << 20
# Recent bytes kept in memory for followers; older ones are read back from the temp file. Bytes
# not yet written are always kept, so a fill holds at most about WINDOW + 2 * BATCH.
WINDOW = 2 << 20


class FillFailed(Exception):
    """The fill did not publish verified bytes; ``integrity`` when they hashed wrong."""

    def __init__(self, reason: str, *, integrity: bool = False) -> None:
        super().__init__(reason)
        self.integrity = integrity


class Fill:
    def __init__(
        self,
        key: ContentKey,
        writer: Writer,
        *,
        size: int | None,
        media_type: str | None,
        fill_timeout: float,
    ) -> None:
        self.key = key
        self.size = size
        self.media_type = media_type
        self.started = time.monotonic()
        self._writer = writer
        self._fill_timeout = fill_timeout
        self._changed = asyncio.Event()
        self._followers = 0
        self._done = False
        self._verified = False
        self._settled = asyncio.Event()
        self._received = 0
        # The in-memory window: _blocks[i] holds bytes _starts[i] .. _starts[i] + len.
        self._blocks: list[bytes] = []
        self._starts: list[int] = []
        self._kept = 0
        self.entry: Entry | None = None
        self.error: FillFailed | None = None
        self._timeout: asyncio.Timeout | None = None

    @property
    def written(self) -> int:
        return self._writer.written

    @property
    def received(self) -> int:
        """Bytes received from the upstream so far (some may not be written yet)."""
        return self._received

    @property
    def done(self) -> bool:
        return self._done

    @property
    def verified(self) -> bool:
        """Every byte arrived and hashed to the digest; publication may still be under way."""
        return self._verified

    async def settled(self) -> None:
        """Wait until the fill ended: published (and registered by ``on_end``) or failed."""
        await self._settled.wait()

    async def run(
        self, chunks: AsyncIterator[bytes], on_end: Callable[[Fill], Awaitable[None]]
    ) -> None:
        """Copy ``chunks`` into the store, verify, publish; wake followers at every step."""
        writing: asyncio.Future[None] | None = None
        try:
            async with asyncio.timeout(None) as self._timeout:
                self._arm()
                pending: list[bytes] = []
                pending_size = 0
                async for chunk in chunks:
                    if not chunk:
                        continue
                    self._keep(chunk)
                    pending.append(chunk)
                    pending_size += len(chunk)
                    if pending_size >= BATCH:
                        if writing is not None:
                            # One batch in the writer at a time; shielded, so a cancelled
                            # fill never leaves a thread writing to a file it discards.
                            await asyncio.shield(writing)
                        writing = asyncio.ensure_future(self._write(pending))
                        pending, pending_size = [], 0
                    self._wake()
                if writing is not None:
                    await asyncio.shield(writing)
                    writing = None
                if pending:
                    await self._write(pending)
                if self.size is not None and self.written != self.size:
                    raise FillFailed(
                        f"upstream body ended after {self.written} of {self.size} bytes"
                    )
                try:
                    verify = getattr(self._writer, "verify", None)
                    if verify is not None:
                        # The digest matched: the last byte may go out before fsync/rename.
                        await verify()
                        self._verified = True
                        self._wake()
                    self.entry = await self._writer.commit()
                except DigestMismatch as exc:
                    raise FillFailed(str(exc), integrity=True) from exc
                self._verified = True
        except FillFailed as exc:
            self.error = exc
        except TimeoutError:
            self.error = FillFailed(f"fill_timeout ({self._fill_timeout:g}s) with no caller left")
        except asyncio.CancelledError:
            self.error = FillFailed("fill cancelled")
        except Exception as exc:  # upstream body errors, disk errors: all fail the fill
            self.error = FillFailed(f"{type(exc).__name__}: {exc}")
        finally:
            if writing is not None:
                # Never abort/close under a write still running in a worker thread.
                await asyncio.wait([writing])
                if not writing.cancelled():
                    writing.exception()  # retrieved: the failure is already in self.error
            if self.error is not None:
                await asyncio.shield(self._writer.abort())
            self._done = True
            self._wake()
            self._maybe_release()
            try:
                await on_end(self)
            finally:
                self._settled.set()

    async def _write(self, pending: list[bytes]) -> None:
        await self._writer.write(pending[0] if len(pending) == 1 else b"".join(pending))
        self._trim()

    def _keep(self, chunk: bytes) -> None:
        self._starts.append(self._received)
        self._blocks.append(chunk)
        self._received += len(chunk)
        self._kept += len(chunk)
        self._trim()

    def _trim(self) -> None:
        """Drop the oldest blocks beyond WINDOW, once they are in the temp file."""
        drop = 0
        written = self.written
        kept = self._kept
        while drop < len(self._blocks) - 1 and kept > WINDOW:
            size = len(self._blocks[drop])
            if self._starts[drop] + size > written:
                break
            kept -= size
            drop += 1
        if drop:
            del self._blocks[:drop]
            del self._starts[:drop]
            self._kept = kept

    def _from_memory(self, offset: int, stop: int) -> bytes | None:
        """Bytes from ``offset`` (below ``stop``) out of one in-memory block, or None."""
        if not self._starts or offset < self._starts[0]:
            return None
        i = bisect.bisect_right(self._starts, offset) - 1
        block, first = self._blocks[i], self._starts[i]
        if offset >= first + len(block):
            return None
        if offset == first and first + len(block) <= stop:
            return block  # the common case for a caught-up follower: no copy
        return block[offset - first : min(stop, first + len(block)) - first]

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _arm(self) -> None:
        """No follower left: the fill may run ``fill_timeout`` more; a follower disarms it."""
        if self._timeout is None or self._done:
            return
        if self._followers:
            self._timeout.reschedule(None)
        else:
            self._timeout.reschedule(asyncio.get_running_loop().time() + self._fill_timeout)

    def _maybe_release(self) -> None:
        if self._done and self._followers == 0:
            self._blocks, self._starts, self._kept = [], [], 0
            self._writer.release()

    async def follow(self, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Bytes ``start`` to ``end`` (exclusive) as they arrive; FillFailed on failure.

        Until the digest verified, the last byte of the blob is held back: a follower cannot
        finish a response before the bytes checked out.
        """
        self._followers += 1
        self._arm()
        try:
            offset = start
            while True:
                complete = self._verified
                total = self._received if complete else self.size
                stop = end if end is not None else total
                if complete:
                    limit = self._received
                elif self.size is not None:  # hold back the blob's last byte, nothing more
                    limit = min(self._received, self.size - 1)
                else:
                    limit = max(0, self._received - 1)
                if stop is not None:
                    limit = min(limit, stop)
                if offset < limit:
                    data = self._from_memory(offset, limit)
                    if data is None:  # fell behind the window: it is in the temp file
                        size = min(limit, self.written) - offset
                        data = await self._writer.read_at(offset, min(size, READ_CHUNK))
                        if not data:
                            raise FillFailed("cache file shorter than written")
                    offset += len(data)
                    yield data
                    continue
                if complete and (stop is None or offset >= stop):
                    return
                if self.error is not None:
                    raise self.error
                if complete:  # asked past the end of what was received
                    return
                await self._changed.wait()
        finally:
            self._followers -= 1
            self._arm()
            self._maybe_release()
