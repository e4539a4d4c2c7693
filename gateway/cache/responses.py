"""HTTP answers from the cache: published files by sendfile, fills as they grow, manifests.

Every answer carries ``Docker-Content-Digest``, an ``ETag`` of the digest, ``Accept-Ranges``
and ``X-Cache``. Published blobs go through the kernel (``loop.sendfile``). A response that
follows a fill sets ``Content-Length`` and, if the fill fails, aborts the connection: the
caller sees a short body, never a complete-looking wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from ..errors import envelope
from ..keys import CACHE_RESULT, METRICS_KEY, RELAYED, ROUTE, SENT, UPSTREAM
from ..metrics import SentBytes
from ..upstream.relay import Relayed
from .fill import Fill, FillFailed
from .ranges import ByteRange, Unsatisfiable, parse_range

OCTET = "application/octet-stream"
SENDFILE_CHUNK = 16 << 20  # sendfile in slices so BYTES (and bytes_sent) moves while it runs


def _sent(request: web.Request) -> SentBytes:
    """Count this answer's body bytes as they are written, like a relayed one."""
    bytes_sent = request.app[METRICS_KEY].bytes_sent
    upstream, route = request.get(UPSTREAM), request.get(ROUTE)
    counter = bytes_sent.labels(upstream, route) if upstream and route else None
    sent = request[SENT] = SentBytes(counter)
    return sent


def _cut_short(
    request: web.Request, response: web.StreamResponse, status: int, reason: str
) -> None:
    """Record a body that did not complete, for the request line and metrics."""
    request[RELAYED] = Relayed(response, (status, reason))


def _headers(digest: str, content_type: str | None, result: str) -> dict[str, str]:
    return {
        "Content-Type": content_type or OCTET,
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "X-Cache": result,
    }


def _select(
    request: web.Request, size: int, headers: dict[str, str]
) -> tuple[int, ByteRange | None]:
    if request.method != "GET":
        return 200, None
    chosen = parse_range(request.headers.get("Range"), size)  # raises Unsatisfiable
    if chosen is None:
        return 200, None
    headers["Content-Range"] = chosen.content_range(size)
    return 206, chosen


def unsatisfiable(request: web.Request, size: int, headers: dict[str, str]) -> web.Response:
    """416 with ``Content-Range: bytes */size`` and an OCI error body of the right length."""
    body = envelope("RANGE_INVALID", "requested range not satisfiable", {"size": size})
    kept = {k: v for k, v in headers.items() if k in ("Docker-Content-Digest", "ETag", "X-Cache")}
    return web.Response(
        status=416,
        body=body,
        headers={**kept, "Content-Type": "application/json", "Content-Range": f"bytes */{size}"},
    )


async def serve_file(
    request: web.Request, path: Path, size: int, digest: str, *, result: str = "HIT"
) -> web.StreamResponse:
    """A published blob, whole or one range, through sendfile; HEAD answered from the size."""
    headers = _headers(digest, OCTET, result)
    try:
        status, chosen = _select(request, size, headers)
    except Unsatisfiable:
        return unsatisfiable(request, size, headers)
    offset, count = (chosen.start, chosen.length) if chosen else (0, size)
    request[CACHE_RESULT] = result.lower()
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = count
    if request.method == "HEAD":
        await response.prepare(request)
        await response.write_eof()
        return response
    file = await asyncio.to_thread(open, path, "rb")
    counted = _sent(request)
    sent = 0
    try:
        await response.prepare(request)
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("caller went away")
        loop = asyncio.get_running_loop()
        while sent < count:
            step = min(SENDFILE_CHUNK, count - sent)
            n = await loop.sendfile(transport, file, offset + sent, step)
            if n == 0:
                break
            sent += n
            counted.add(n)
        if sent != count:
            # The file shrank under us (it must not): never end a short body cleanly.
            transport.abort()
            _cut_short(request, response, 500, f"cache file ended after {sent} of {count} bytes")
            return response
        await response.write_eof()
    finally:
        await asyncio.to_thread(file.close)
        request.app[METRICS_KEY].cache_bytes_served.inc(sent)
    return response


async def serve_fill(
    request: web.Request, fill: Fill, *, result: str = "MISS"
) -> web.StreamResponse:
    """Follow a fill in progress; Content-Length from the upstream's size when it sent one."""
    digest = fill.key.digest
    headers = _headers(digest, OCTET, result)
    size = fill.size
    chosen: ByteRange | None = None
    status = 200
    if size is not None:
        try:
            status, chosen = _select(request, size, headers)
        except Unsatisfiable:
            return unsatisfiable(request, size, headers)
    request[CACHE_RESULT] = result.lower()
    response = web.StreamResponse(status=status, headers=headers)
    if chosen is not None:
        response.content_length = chosen.length
    elif size is not None:
        response.content_length = size
    if request.method == "HEAD":
        await response.prepare(request)
        await response.write_eof()
        return response
    start, end = (chosen.start, chosen.end) if chosen else (0, None)
    counted = _sent(request)
    await response.prepare(request)
    try:
        # aclosing: a caller hanging up stops following at once (the fill itself goes on).
        async with contextlib.aclosing(fill.follow(start, end)) as chunks:
            async for chunk in chunks:
                await response.write(chunk)
                counted.add(len(chunk))
    except FillFailed as exc:
        if request.transport is not None:
            request.transport.abort()  # a short body, never a clean end of wrong bytes
        _cut_short(request, response, 502, f"cache fill failed: {exc}")
        return response
    except ConnectionError:
        _cut_short(request, response, 499, "caller disconnected")
        return response
    await response.write_eof()
    return response


def serve_manifest(
    request: web.Request, body: bytes, digest: str, media_type: str, *, result: str
) -> web.Response:
    request[CACHE_RESULT] = result.lower()
    if request.method != "HEAD":
        _sent(request).add(len(body))
    headers = _headers(digest, media_type, result)
    del headers["Accept-Ranges"]
    if request.method != "HEAD" and result != "MISS":
        request.app[METRICS_KEY].cache_bytes_served.inc(len(body))
    return web.Response(body=body, headers=headers)


async def mark_response(request: web.Request, response: web.StreamResponse) -> None:
    """``X-Cache`` on every manifest and blob answer the cache was asked about."""
    result = request.get(CACHE_RESULT)
    if result is not None and "X-Cache" not in response.headers:
        response.headers["X-Cache"] = "STALE" if result == "stale" else (
            "HIT" if result == "hit" else "MISS")  # fmt: skip
    ns = request.query.get("ns")
    if result is not None and ns is not None and "OCI-Namespace" not in response.headers:
        response.headers["OCI-Namespace"] = ns  # as relay() does for upstream answers
