"""Relaying an upstream response to the caller: status, allow-listed headers, streamed body.

Bodies flow chunk by chunk with backpressure (``await write`` waits for the socket to drain),
so memory stays flat whatever the blob size. An upstream that fails mid-body aborts the
caller's connection: a truncated body must never look like a complete one. Such failures are
recorded in ``request[ABORTED]`` as (status for logs and metrics, reason), not raised.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

from ..keys import ABORTED, BYTES, PASSTHROUGH_KEY, RELAY
from ..log import get_logger
from . import passthrough
from .headers import caller_response_headers, rewrite_link

log = get_logger(__name__)


@dataclass(frozen=True)
class LinkContext:
    """What a ``Link`` rewrite needs to map upstream paths into the gateway's path space."""

    upstream_url: URL
    upstream_name: str
    caller_name: str
    ns: str | None


async def relay(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    *,
    link: LinkContext | None = None,
    ns: str | None = None,
    read_timeout: float = 60.0,
) -> web.StreamResponse:
    """Copy ``upstream`` to the caller; the upstream response is released on return."""
    headers = caller_response_headers(upstream.headers)
    if ns is not None:
        headers["OCI-Namespace"] = ns  # distribution-spec "Registry Proxying"
    if upstream.status in (301, 302, 303, 307, 308) and "Location" in upstream.headers:
        # redirects: pass — the caller fetches from the target itself, without our credentials.
        headers["Location"] = str(upstream.url.join(URL(upstream.headers["Location"])))
    if link is not None:
        links = [
            rewritten
            for value in upstream.headers.getall("Link", [])
            if (rewritten := rewrite_link(
                value,
                upstream_url=link.upstream_url,
                upstream_name=link.upstream_name,
                caller_name=link.caller_name,
                ns=link.ns,
            ))
        ]  # fmt: skip
        for value in links:
            headers.add("Link", value)
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    length = upstream.content_length
    if request.method == "HEAD" or upstream.status in (204, 304):
        request[BYTES] = 0
        upstream.release()
        await response.prepare(request)
        return response
    if length is not None:
        response.content_length = length
    failure: tuple[int, str] | None = None
    try:
        await response.prepare(request)
        sent = await _copy_body(request, response, upstream, length, read_timeout)
        if length is not None and sent != length:
            failure = (502, f"upstream body ended after {sent} of {length} bytes")
    except ConnectionError:
        # The caller's side: resets, broken pipes, aiohttp's ClientConnectionResetError and the
        # plain ConnectionError("Connection lost") its drain raises. Upstream failures arrive
        # as aiohttp client errors or BodyTruncated, never as a builtin ConnectionError.
        failure = (499, "caller disconnected")
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError,
            passthrough.BodyTruncated, passthrough.BodyStalled) as exc:  # fmt: skip
        failure = (502, f"upstream body failed: {type(exc).__name__}: {exc}")
    except asyncio.CancelledError:
        upstream.close()  # the handler is being torn down: stop reading upstream at once
        raise
    if failure is not None:
        # A truncated body must never look complete: abort instead of ending the response.
        upstream.close()
        _abort(request)
        request[ABORTED] = failure
        return response
    upstream.release()
    await response.write_eof()
    return response


async def _copy_body(
    request: web.Request,
    response: web.StreamResponse,
    upstream: aiohttp.ClientResponse,
    length: int | None,
    read_timeout: float,
) -> int:
    """Stream the body; large plain-TCP bodies go socket to socket once the first bytes are out."""
    sent = request[BYTES] = 0
    content = upstream.content
    source = passthrough.plain_socket(
        upstream.connection.transport if upstream.connection else None
    )
    sink = passthrough.plain_socket(request.transport)
    direct = (
        source is not None
        and sink is not None
        and length is not None
        and length >= passthrough.MIN_PASSTHROUGH_BYTES
        and "Transfer-Encoding" not in upstream.headers
        and request.app[PASSTHROUGH_KEY].has_capacity()
    )
    if direct:
        assert length is not None and source is not None and sink is not None
        upstream_transport = upstream.connection.transport  # type: ignore[union-attr]
        with passthrough.WriteBufferFlushed(request.transport):
            first = await content.readany()
            if first:
                await response.write(first)
                sent = request[BYTES] = len(first)
            # No await between taking aiohttp's buffer and pausing: nothing can slip in.
            buffered = content.read_nowait(-1)
            upstream_transport.pause_reading()  # type: ignore[union-attr]
            if buffered:
                await response.write(buffered)
                sent = request[BYTES] = sent + len(buffered)
        if request.transport is None or request.transport.get_write_buffer_size():
            raise ConnectionResetError("caller transport is gone or not flushed")
        if sent < length:
            request[RELAY] = "passthrough"
            progress = [sent]
            try:
                pump = request.app[PASSTHROUGH_KEY]
                await pump.copy_exact(source, sink, length - sent, read_timeout, progress)
            finally:
                upstream.close()  # aiohttp's parser no longer knows where the body ends
                sent = request[BYTES] = progress[0]
        return sent
    async for chunk in content.iter_any():
        await response.write(chunk)
        sent += len(chunk)
        request[BYTES] = sent
    return sent


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
