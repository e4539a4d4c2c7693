"""Relaying an upstream response to the caller: status, allow-listed headers, streamed body.

Bodies flow chunk by chunk with backpressure (``await write`` waits for the socket to drain),
so memory stays flat whatever the blob size. An upstream that fails mid-body aborts the
caller's connection: a truncated body must never look like a complete one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

from ..keys import BYTES
from ..log import get_logger
from .headers import caller_response_headers, rewrite_link

log = get_logger(__name__)


@dataclass(frozen=True)
class LinkContext:
    """What a ``Link`` rewrite needs to map upstream paths into the gateway's path space."""

    upstream_url: URL
    upstream_name: str
    caller_name: str
    ns: str | None


class RelayAborted(Exception):
    """The body could not be relayed completely; the caller's connection was aborted."""

    def __init__(self, reason: str, sent: int) -> None:
        self.reason = reason
        self.sent = sent
        super().__init__(reason)


async def relay(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    *,
    link: LinkContext | None = None,
    ns: str | None = None,
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
        await response.prepare(request)
        upstream.release()
        return response
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    sent = 0
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
            sent += len(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
        request[BYTES] = sent
        upstream.close()
        _abort(request)
        raise RelayAborted(f"upstream body failed: {type(exc).__name__}", sent) from exc
    except (ConnectionResetError, asyncio.CancelledError):
        request[BYTES] = sent
        upstream.close()  # caller went away: stop reading upstream at once
        raise
    request[BYTES] = sent
    if length is not None and sent != length:
        upstream.close()
        _abort(request)
        raise RelayAborted(f"upstream body ended after {sent} of {length} bytes", sent)
    upstream.release()
    await response.write_eof()
    return response


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
