"""Request context and error mapping: the outermost layer every request passes through.

Binds a request id to every log line, writes one canonical log line and the request metrics
per request, and turns every error into the OCI envelope (never a traceback or HTML page).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from .errors import RegistryError, render, render_status
from .keys import (
    CACHE_RESULT,
    EXCHANGE,
    METRICS_KEY,
    NAME,
    PRINCIPAL,
    RELAYED,
    REQUEST_ID,
    ROUTE,
    SENT,
    TENANT,
    UPSTREAM,
    VIA,
)
from .log import get_logger
from .metrics import method_label

log = get_logger("gateway.request")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_HEADER = "X-Request-ID"
_MAX_REQUEST_ID = 128

_HTTP_CODES = {
    400: "UNSUPPORTED", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN",
    405: "UNSUPPORTED", 413: "SIZE_INVALID", 429: "TOOMANYREQUESTS",
}  # fmt: skip


def request_id_for(request: web.Request) -> str:
    """The caller's X-Request-ID when sane (printable ASCII, ≤128 chars), else a fresh one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if 0 < len(given) <= _MAX_REQUEST_ID and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex


def _route_label(request: web.Request) -> str:
    route = request.get(ROUTE)
    if route:
        return str(route)
    path = request.path
    if path.startswith("/v2"):
        return "base" if path in ("/v2", "/v2/") else "other"
    if path == "/token":
        return "token"
    return "other"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, inflight gauge, canonical log line, request metrics, error envelope."""
    started = time.perf_counter()
    request_id = request[REQUEST_ID] = request_id_for(request)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    metrics = request.app[METRICS_KEY]
    metrics.inflight.inc()
    response: web.StreamResponse | None = None
    relayed = None
    status = 500
    error: str | None = None
    try:
        try:
            response = await handler(request)
        except RegistryError as exc:
            response = render(exc)
            error = exc.code
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = render_status(exc.status, _HTTP_CODES.get(exc.status, "UNKNOWN"),
                                     exc.reason)  # fmt: skip
            error = exc.reason
        except ConnectionError as exc:
            # The caller hung up (upstream failures arrive as RegistryError). Re-raising would
            # make aiohttp log a traceback; a response it cannot send is dropped quietly.
            status, error = 499, f"caller disconnected: {type(exc).__name__}"
            return web.Response(status=499)
        except asyncio.CancelledError:
            # Still running when shutdown_grace ran out: the caller got a cut-off response.
            status, error = 503, "cancelled at shutdown"
            raise
        except Exception as exc:
            log.exception("request_failed")
            response = render_status(500, "UNKNOWN", "internal error")
            error = type(exc).__name__
        status = response.status
        relayed = request.get(RELAYED)
        if relayed is not None and relayed.aborted is not None:
            status, error = relayed.aborted
            if status != 499:  # a caller hanging up is theirs to know, not an alert
                log.warning("relay_aborted", reason=error, sent=request[SENT].total)
        return response
    finally:
        elapsed = time.perf_counter() - started
        metrics.inflight.dec()
        route = _route_label(request)
        metrics.requests.labels(route, method_label(request.method), str(status)).inc()
        metrics.request_duration.labels(route).observe(elapsed)
        upstream = request.get(UPSTREAM)
        relayed_bytes = request.get(SENT)
        if relayed_bytes is not None:
            sent = relayed_bytes.total  # bytes_sent_total already counted them as written
        else:
            sent = (response.content_length or 0) if response is not None else 0
            if upstream and sent:
                metrics.bytes_sent.labels(upstream, route).inc(sent)
        exchange = request.get(EXCHANGE)
        log.info(
            "request_completed",
            method=request.method,
            path=request.path,
            route=route,
            upstream=upstream,
            via=request.get(VIA),
            name=request.get(NAME),
            status=status,
            bytes=sent,
            duration_ms=round(elapsed * 1000, 2),
            principal=request.get(PRINCIPAL),
            tenant=request.get(TENANT),
            upstream_auth=exchange.auth if exchange else None,
            redirects=exchange.redirects if exchange else None,
            relay="passthrough" if relayed is not None and relayed.passthrough else None,
            cache=request.get(CACHE_RESULT),
            error=error,
        )


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Every response carries the request id, including streamed and aiohttp-made ones."""
    if REQUEST_ID_HEADER not in response.headers:
        response.headers[REQUEST_ID_HEADER] = request.get(REQUEST_ID) or request_id_for(request)
