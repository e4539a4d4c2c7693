"""Relaying an upstream response to the caller: status, allow-listed headers, streamed body.

Bodies flow chunk by chunk with backpressure (``await write`` waits for the socket to drain),
so memory stays flat whatever the blob size. An upstream that fails mid-body aborts the
caller's connection: a truncated body must never look like a complete one. Such failures are
returned in ``Relayed.aborted`` as (status for logs and metrics, reason), not raised.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

from ..metrics import SentBytes
from . import passthrough
from .headers import caller_response_headers, rewrite_link


@dataclass(frozen=True)
class LinkContext:
    """What a ``Link`` rewrite needs to map upstream paths into the gateway's path space."""

    upstream_url: URL
    upstream_name: str
    caller_name: str
    ns: str | None


@dataclass(frozen=True)
class Relayed:
    """What a relay did: the response, and how its body went."""

    response: web.StreamResponse
    # (status for logs and metrics, reason) when the body was cut short
    aborted: tuple[int, str] | None = None
    passthrough: bool = False  # the body went socket to socket


async def relay(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    *,
    sent: SentBytes,
    pump: passthrough.Passthrough | None,
    link: LinkContext | None = None,
    ns: str | None = None,
    read_timeout: float = 60.0,
) -> Relayed:
    """Copy ``upstream`` to the caller, counting body bytes into ``sent`` as they are written.

    ``pump`` runs large plain-TCP bodies socket to socket; None streams every body through
    aiohttp. The upstream response is released (or closed) on return.
    """
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
        upstream.release()
        await response.prepare(request)
        return Relayed(response)
    if length is not None:
        response.content_length = length
    failure: tuple[int, str] | None = None
    direct = [False]
    try:
        await response.prepare(request)
        await _copy_body(request, response, upstream, length, read_timeout, sent, pump, direct)
        if length is not None and sent.total != length:
            failure = (502, f"upstream body ended after {sent.total} of {length} bytes")
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
        return Relayed(response, failure, direct[0])
    upstream.release()
    await response.write_eof()
    return Relayed(response, None, direct[0])


async def _copy_body(
    request: web.Request,
    response: web.StreamResponse,
    upstream: aiohttp.ClientResponse,
    length: int | None,
    read_timeout: float,
    sent: SentBytes,
    pump: passthrough.Passthrough | None,
    direct: list[bool],
) -> None:
    """Stream the body; large plain-TCP bodies go socket to socket once the first bytes are out."""
    content = upstream.content
    source = sink = None
    if pump is not None and length is not None and length >= passthrough.MIN_PASSTHROUGH_BYTES:
        source = passthrough.plain_socket(
            upstream.connection.transport if upstream.connection else None
        )
        sink = passthrough.plain_socket(request.transport)
    if (
        pump is not None
        and source is not None
        and sink is not None
        and length is not None
        and "Transfer-Encoding" not in upstream.headers
        and pump.has_capacity()
    ):
        upstream_transport = upstream.connection.transport  # type: ignore[union-attr]
        with passthrough.WriteBufferFlushed(request.transport):
            first = await content.readany()
            if first:
                _count_before_write(request, sent, len(first))
                await response.write(first)
            # No await between taking aiohttp's buffer and pausing: nothing can slip in.
            buffered = content.read_nowait(-1)
            upstream_transport.pause_reading()  # type: ignore[union-attr]
            if buffered:
                _count_before_write(request, sent, len(buffered))
                await response.write(buffered)
        if request.transport is None or request.transport.get_write_buffer_size():
            raise ConnectionResetError("caller transport is gone or not flushed")
        if sent.total < length:
            direct[0] = True
            try:
                await pump.copy_exact(source, sink, length - sent.total, read_timeout, sent.add)
            finally:
                upstream.close()  # aiohttp's parser no longer knows where the body ends
        return
    async for chunk in content.iter_any():
        _count_before_write(request, sent, len(chunk))
        await response.write(chunk)


def _count_before_write(request: web.Request, sent: SentBytes, count: int) -> None:
    """Count bytes the transport is about to take, before ``write`` can yield in its drain.

    A scrape served while the last chunk drains then already includes it. A closing transport
    takes nothing: that is the caller's hang-up, raised here as aiohttp would.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("caller disconnected")
    sent.add(count)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
