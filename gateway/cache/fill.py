"""A fill: one upstream fetch of one digest, written to the store and followed by every caller.

The fill runs as its own task, detached from the caller that started it: every caller (that
one included) is a follower that reads the growing temp file as bytes arrive. Followers are
never handed the last byte before the digest verified and the object was published; when the
bytes turn out wrong, or the upstream fails, every follower gets :class:`FillFailed` and
aborts its connection. While no follower is left, the fill may go on for ``fill_timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from ..log import get_logger
from .store import ContentKey, DigestMismatch, Entry, Writer

log = get_logger(__name__)

READ_CHUNK = 1 << 20


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
        self.entry: Entry | None = None
        self.error: FillFailed | None = None
        self._timeout: asyncio.Timeout | None = None

    @property
    def written(self) -> int:
        return self._writer.written

    @property
    def done(self) -> bool:
        return self._done

    async def run(
        self, chunks: AsyncIterator[bytes], on_end: Callable[[Fill], Awaitable[None]]
    ) -> None:
        """Copy ``chunks`` into the store, verify, publish; wake followers at every step."""
        try:
            async with asyncio.timeout(None) as self._timeout:
                self._arm()
                async for chunk in chunks:
                    await self._writer.write(chunk)
                    self._wake()
                if self.size is not None and self.written != self.size:
                    raise FillFailed(
                        f"upstream body ended after {self.written} of {self.size} bytes"
                    )
                try:
                    self.entry = await self._writer.commit()
                except DigestMismatch as exc:
                    raise FillFailed(str(exc), integrity=True) from exc
        except FillFailed as exc:
            self.error = exc
        except TimeoutError:
            self.error = FillFailed(f"fill_timeout ({self._fill_timeout:g}s) with no caller left")
        except asyncio.CancelledError:
            self.error = FillFailed("fill cancelled")
        except Exception as exc:  # upstream body errors, disk errors: all fail the fill
            self.error = FillFailed(f"{type(exc).__name__}: {exc}")
        finally:
            if self.error is not None:
                await asyncio.shield(self._writer.abort())
            self._done = True
            self._wake()
            self._maybe_release()
            await on_end(self)

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
            self._writer.release()

    async def follow(self, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Bytes ``start`` to ``end`` (exclusive) as they arrive; FillFailed on failure.

        Until the fill published, the last byte of the blob is held back: a follower cannot
        finish a response before the digest checked out.
        """
        self._followers += 1
        self._arm()
        try:
            offset = start
            while True:
                published = self.entry is not None
                total = self.entry.size if self.entry is not None else self.size
                stop = end if end is not None else total
                limit = self.written if published else max(0, self.written - 1)
                if stop is not None:
                    limit = min(limit, stop)
                if offset < limit:
                    data = await self._writer.read_at(offset, min(limit - offset, READ_CHUNK))
                    if not data:
                        raise FillFailed("cache file shorter than written")
                    offset += len(data)
                    yield data
                    continue
                if published and (stop is None or offset >= stop):
                    return
                if self.error is not None:
                    raise self.error
                if published:  # asked past the end of what was published
                    return
                await self._changed.wait()
        finally:
            self._followers -= 1
            self._arm()
            self._maybe_release()
