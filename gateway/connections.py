"""Caller connections: how many may be open at once, and what a malformed request gets back.

aiohttp's ``RequestHandler`` is the protocol object of every caller connection; the gateway
listens with a subclass that

1. counts open connections and, once ``limits.max_connections`` are open, answers the next
   caller ``503`` with ``Retry-After`` and closes (a listen backlog only queues connections
   waiting for ``accept``; it never bounds how many are open);
2. answers what aiohttp's HTTP parser rejects (request line or header field too long, too many
   headers, malformed HTTP) with the OCI error envelope, an ``X-Request-ID``, a log line and
   the request metrics, instead of a plain-text page and an ERROR traceback that quotes the
   offending line (which may hold a credential).

The count is taken in ``connection_made`` and released in ``connection_lost``, both run on
the event loop, so a burst accepted in one loop iteration cannot overshoot the cap.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from .errors import API_VERSION_HEADER, envelope, render_status
from .log import get_logger
from .metrics import Metrics
from .settings import LimitsSettings

log = get_logger("gateway.connections")

REQUEST_ID_HEADER = "X-Request-ID"
# How much of a refused caller's request head is read before answering it.
_REFUSAL_HEAD_LIMIT = 64 * 1024
_REFUSAL_TIMEOUT = 5.0
_REQUEST_LINE = re.compile(rb"^[A-Z]+ ")


class ConnectionLimit:
    """Open caller connections against ``maximum``; shared by every connection of a listener."""

    def __init__(self, maximum: int, metrics: Metrics) -> None:
        self.maximum = maximum
        self.open = 0
        self._metrics = metrics
        self._saturated = False

    def acquire(self) -> bool:
        """Count one more open connection, or False when the cap is reached."""
        if self.open >= self.maximum:
            self._metrics.connections_rejected.inc()
            if not self._saturated:
                # Edge-triggered: one line when the cap is reached, not one per refusal.
                self._saturated = True
                log.warning("connection_limit_reached", max_connections=self.maximum)
            return False
        self.open += 1
        self._metrics.connections.set(self.open)
        return True

    def release(self) -> None:
        self.open -= 1
        self._metrics.connections.set(self.open)
        if self._saturated and self.open < self.maximum:
            self._saturated = False
            log.info("connection_limit_cleared", max_connections=self.maximum)


def refusal_response(maximum: int) -> bytes:
    """The raw HTTP/1.1 503 a caller over the connection cap receives before the close."""
    body = envelope(
        "UNAVAILABLE",
        "too many connections to the gateway; retry shortly",
        {"max_connections": maximum},
    )
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Retry-After": "1",
        "Connection": "close",
        REQUEST_ID_HEADER: uuid.uuid4().hex,
        **API_VERSION_HEADER,
    }
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 503 Service Unavailable\r\n{head}\r\n".encode("ascii") + body


class _Refusal:
    """A connection over the cap: read its request head, answer 503, close."""

    def __init__(self, transport: asyncio.Transport, maximum: int) -> None:
        self._transport = transport
        self._maximum = maximum
        self._head = bytearray()
        self._answered = False
        # A caller that never finishes its request head is dropped without an answer.
        self._timer = asyncio.get_running_loop().call_later(_REFUSAL_TIMEOUT, transport.abort)

    def feed(self, data: bytes) -> None:
        if self._answered:
            return
        self._head += data
        if b"\r\n\r\n" in self._head or len(self._head) >= _REFUSAL_HEAD_LIMIT:
            self._answered = True
            self._transport.write(refusal_response(self._maximum))
            self._transport.close()  # after the write buffer is flushed

    def lost(self) -> None:
        self._timer.cancel()


# A TLS record header: content type 22 (handshake), protocol major version 3 (RFC 8446 §5.1).
_TLS_HANDSHAKE = b"\x16\x03"


def _rejection(exc: BaseException | None) -> tuple[int, str]:
    """Status and reason for a request aiohttp's parser refused; never quotes the request."""
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        if isinstance(line, str):
            line = line.encode("latin-1", "replace")
        # The C parser reports the URL alone, the Python parser the whole request line.
        if line.startswith(b"/") or _REQUEST_LINE.match(line):
            return 414, "request line too long"
        return 431, "request header field too long"
    if isinstance(exc, BadHttpMessage) and "Too many headers" in exc.message:
        return 431, "too many request header fields"
    return 400, "malformed HTTP request"


class GatewayRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol with the connection cap and envelope parse errors."""

    __slots__ = ("_counted", "_limit", "_metrics", "_refusal", "_started", "_tls_hello")

    def __init__(
        self, manager: web.Server, *, limit: ConnectionLimit, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._limit = limit
        self._metrics = metrics
        self._counted = False
        self._refusal: _Refusal | None = None
        self._started = False  # the connection's first bytes have arrived
        self._tls_hello = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._limit.acquire():
            self._refusal = _Refusal(transport, self._limit.maximum)  # type: ignore[arg-type]
            return
        self._counted = True
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            self._refusal.feed(data)
            return
        if not self._started:
            self._started = True
            self._tls_hello = data.startswith(_TLS_HANDSHAKE)
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refusal is not None:
            self._refusal.lost()
            return
        if self._counted:
            self._counted = False
            self._limit.release()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or not isinstance(exc, BadHttpMessage):
            return super().handle_error(request, status, exc, message)
        # The parser refused the request before it reached the app and its middlewares.
        status, reason = _rejection(exc)
        request_id = uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if self._tls_hello:
            # skopeo/containers-image and Docker try HTTPS first against an "insecure"
            # registry; the plain 400 below is what makes them fall back to HTTP. Routine.
            log.debug("tls_on_plain_http", status=status, remote=request.remote,
                      reason="TLS ClientHello on the plain-HTTP port: a client probing for "
                      "HTTPS before falling back to HTTP")  # fmt: skip
        else:
            log.warning("request_rejected", status=status, reason=reason, remote=request.remote)
        self._metrics.requests.labels("other", "other", str(status)).inc()
        response = render_status(status, "UNSUPPORTED", reason)
        response.headers[REQUEST_ID_HEADER] = request_id
        response.headers["Connection"] = "close"  # said even when the request line was HTTP/1.0
        response.force_close()
        return response


def handler_kwargs(limits: LimitsSettings) -> dict[str, Any]:
    """The per-connection limits, as aiohttp's RequestHandler keyword arguments."""
    return {
        "keepalive_timeout": limits.keepalive_timeout,
        "max_line_size": limits.max_line_size,
        "max_field_size": limits.max_field_size,
        "max_headers": limits.max_headers,
        "access_log": None,  # the request middleware writes the one canonical line
    }


def protocol_factory(
    runner: web.AppRunner, limits: LimitsSettings, metrics: Metrics
) -> Callable[[], GatewayRequestHandler]:
    """A protocol factory for ``loop.create_server`` serving ``runner``'s app under ``limits``."""
    server = runner.server
    if server is None:
        raise RuntimeError("runner.setup() must run before the listener is built")
    loop = asyncio.get_running_loop()
    limit = ConnectionLimit(limits.max_connections, metrics)
    kwargs = handler_kwargs(limits)

    def factory() -> GatewayRequestHandler:
        return GatewayRequestHandler(server, loop=loop, limit=limit, metrics=metrics, **kwargs)

    return factory


async def listen(
    runner: web.AppRunner,
    host: str,
    port: int,
    limits: LimitsSettings,
    metrics: Metrics,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Start accepting callers; ``close()`` the server to stop, then ``runner.cleanup()``."""
    return await asyncio.get_running_loop().create_server(
        protocol_factory(runner, limits, metrics),
        host,
        port,
        ssl=ssl_context,
        backlog=min(limits.max_connections, 4096),
        reuse_address=True,
    )
