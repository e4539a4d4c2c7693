"""The write relay's two body sources: a caller's streamed body, and a bounded manifest.

``CallerBody`` hands the caller's request body to the upstream client chunk by chunk: aiohttp
reads the next chunk only after the previous one was written upstream, so at most a few
buffers are held whatever the blob size. If the caller's side fails (a hang-up, a short body,
silence past ``timeouts.read``), the iterator raises instead of ending: aiohttp then abandons
the upstream request without its last chunk, and the upstream discards what it got instead of
committing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import StreamReader

from ..errors import ManifestTooLarge


class CallerBody:
    """The caller's body as an async iterable, counted into ``upload_bytes`` as it goes."""

    def __init__(self, content: StreamReader, counter: Any, *, idle_timeout: float) -> None:
        self._content = content
        self._counter = counter  # registry_gateway_upload_bytes_total{upstream}
        self._idle_timeout = idle_timeout  # a caller silent this long mid-body has gone
        self.total = 0
        self.failed: BaseException | None = None  # why the caller's side ended early

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                async with asyncio.timeout(self._idle_timeout):
                    chunk = await self._content.readany()
                if not chunk:
                    return
                self.total += len(chunk)
                self._counter.inc(len(chunk))
                yield chunk
        except Exception as exc:
            self.failed = exc
            raise


async def read_manifest(content: StreamReader, declared: int | None, limit: int) -> bytes:
    """The whole manifest body, refusing (413) past ``limit`` before reading more than that."""
    if declared is not None and declared > limit:
        raise ManifestTooLarge(detail={"size": declared, "limit": limit})
    parts: list[bytes] = []
    size = 0
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > limit:
            raise ManifestTooLarge(detail={"limit": limit})
        parts.append(chunk)
    return b"".join(parts)
