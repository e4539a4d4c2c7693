"""Hits from a remote store (S3): streamed through the gateway, or a 307 to a presigned URL.

With ``cache.s3.redirect`` a GET is answered with ``307 Temporary Redirect`` to a URL valid
for ``redirect_ttl`` seconds, so the blob's bytes never pass through the gateway (HEAD is
answered here, from the size). Otherwise the object streams chunk by chunk, Range included; an
object that ends short aborts the connection instead of ending a short body cleanly.
"""

from __future__ import annotations

from aiohttp import web

from ..keys import CACHE_RESULT, METRICS_KEY
from .ranges import Unsatisfiable
from .responses import OCTET, _cut_short, _headers, _select, _sent, unsatisfiable
from .s3 import S3Store
from .store import ContentKey, StoreUnusable


async def serve_object(
    request: web.Request, store: S3Store, key: ContentKey, size: int, *, redirect_ttl: float | None
) -> web.StreamResponse:
    digest = key.digest
    headers = _headers(digest, OCTET, "HIT")
    request[CACHE_RESULT] = "hit"
    if redirect_ttl is not None and request.method == "GET":
        url = await store.presign(key, redirect_ttl)
        headers = {k: v for k, v in headers.items() if k != "Accept-Ranges"}
        headers.update({"Location": url, "Cache-Control": "no-store"})
        return web.Response(status=307, headers=headers)
    try:
        status, chosen = _select(request, size, headers)
    except Unsatisfiable:
        return unsatisfiable(request, size, headers)
    start, count = (chosen.start, chosen.length) if chosen else (0, size)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = count
    if request.method == "HEAD":
        await response.prepare(request)
        await response.write_eof()
        return response
    chunks = store.stream(key, start, start + count)
    first = await anext(chunks, b"")  # a store failure before any byte is still an error
    counted = _sent(request)
    await response.prepare(request)
    sent = 0
    try:
        chunk = first
        while chunk:
            await response.write(chunk)
            sent += len(chunk)
            counted.add(len(chunk))
            chunk = await anext(chunks, b"")
    except (StoreUnusable, ConnectionError) as exc:
        if request.transport is not None:
            request.transport.abort()
        _cut_short(request, response, 499 if isinstance(exc, ConnectionError) else 502, str(exc))
        return response
    finally:
        await chunks.aclose()
        request.app[METRICS_KEY].cache_bytes_served.inc(sent)
    if sent != count:
        if request.transport is not None:
            request.transport.abort()
        _cut_short(request, response, 502, f"cache object ended after {sent} of {count} bytes")
        return response
    await response.write_eof()
    return response
