"""Caller connections: how many may be open at once, and what a malformed request gets back.

aiohttp's ``RequestHandler`` is the protocol object of every caller connection; the gateway
listens with a subclass that

1. counts open connections and, once ``limits.max_connections`` are open, answers the next
   caller ``503`` with ``Retry-After`` and closes (a listen backlog only queues connections
   waiting for ``accept``; it never bounds how many are open);
2. answers what aiohttp's HTTP parser rejects (request line or header field too long, too many
   headers, malformed HTTP) with the OCI error envelope, an ``X-Request-ID``, a log line and
   the request metrics, instead of a plain-text page and an ERROR traceback that quotes the
   offending line (which may hold a credential);
3. bounds each request head as a whole: at most ``limits.max_header_size`` bytes (431) that
   arrive within ``limits.header_timeout`` seconds of the first (408). aiohttp bounds each line
   and the number of fields, so without this one caller's unfinished head could hold
   ``max_headers * max_field_size`` (1 MiB by default) for as long as it trickles bytes in.
   The head is measured before the parser sees it; a refused caller's further bytes are read
   and dropped for a moment (so the answer is not lost to a reset), then the connection closes;
4. answers an ``Expect`` other than ``100-continue`` with the envelope (417), not aiohttp's
   plain-text page (``expect_handler``, used by the routes).

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
from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from .errors import render_status
from .heap import HeapTrimmer
from .keys import METRICS_KEY
from .log import get_logger
from .metrics import Metrics
from .refusals import RejectionLog, head_ends_within, raw_response, refusal_response
from .settings import LimitsSettings

log = get_logger("gateway.connections")

REQUEST_ID_HEADER = "X-Request-ID"  # also in refusals.py
# How much of a refused caller's request head is read before answering it.
_REFUSAL_HEAD_LIMIT = 64 * 1024
_REFUSAL_TIMEOUT = 5.0
_REQUEST_LINE = re.compile(rb"^[A-Z]+ ")
# How long a refused caller's bytes are still read (and dropped) after the answer.
_LINGER = 1.0


class ConnectionLimit:
    """Open caller connections against ``maximum``; shared by every connection of a listener."""

    def __init__(self, maximum: int, metrics: Metrics, heap: HeapTrimmer | None = None) -> None:
        self.maximum = maximum
        self.open = 0
        self._metrics = metrics
        self._saturated = False
        self._heap = heap

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
        if self._heap is not None:
            self._heap.note(self.open)  # a burst that went away gives its memory back
        if self._saturated and self.open < self.maximum:
            self._saturated = False
            log.info("connection_limit_cleared", max_connections=self.maximum)


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
    """aiohttp's connection protocol with the connection cap, head bounds and envelope errors.

    The head bounds read two of aiohttp's ``RequestHandler`` internals: ``_request_count``
    (a head was parsed) and ``_messages`` (its payload, to tell body bytes from head bytes).
    tests/hostile/test_limits_memory.py fails if an aiohttp upgrade renames them.
    """

    __slots__ = (
        "_counted",
        "_head_bytes",
        "_head_tail",
        "_head_timeout",
        "_head_timer",
        "_last_payload",
        "_limit",
        "_max_head",
        "_metrics",
        "_refusal",
        "_rejected",
        "_rejections",
        "_started",
        "_tls_hello",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        limit: ConnectionLimit,
        metrics: Metrics,
        max_header_size: int = 32768,
        header_timeout: float = 10.0,
        rejections: RejectionLog | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._limit = limit
        self._metrics = metrics
        self._counted = False
        self._refusal: _Refusal | None = None
        self._started = False  # the connection's first bytes have arrived
        self._tls_hello = False
        self._max_head = max_header_size
        self._head_timeout = header_timeout
        self._head_bytes = 0
        self._head_tail = b""
        self._head_timer: asyncio.TimerHandle | None = None
        self._last_payload: Any = None
        self._rejected = False
        self._rejections = rejections or RejectionLog()

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
        if self._rejected:
            return  # answered already: drop what the caller still sends until the close
        in_head = self._reading_head()
        if in_head:
            room = self._max_head - self._head_bytes
            if len(data) > room and not head_ends_within(self._head_tail, data, room):
                self._reject_head(431, "request header block too large")
                return
            if self._head_timer is None:
                loop = asyncio.get_running_loop()
                self._head_timer = loop.call_later(self._head_timeout, self._head_too_slow)
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            # One or more heads ended in this chunk: the next one starts from zero.
            self._head_bytes = 0
            self._head_tail = b""
            self._cancel_head_timer()
            self._last_payload = self._messages[-1][1] if self._messages else None
        elif in_head:
            self._head_bytes += len(data)
            self._head_tail = (self._head_tail + data)[-3:]

    def _reading_head(self) -> bool:
        """True while the bytes that arrive belong to a request head, not to a body."""
        if self._upgraded or self._payload_parser is not None:
            return False
        payload = self._last_payload
        return payload is None or payload.is_eof()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._reading_head() and not self._rejected:
            self._reject_head(408, "request head not received in time")

    def _reject_head(self, status: int, reason: str) -> None:
        """Answer a head over a bound with the envelope, then close after a short linger."""
        self._rejected = True
        self._cancel_head_timer()
        transport = self.transport
        request_id = uuid.uuid4().hex
        peer = transport.get_extra_info("peername") if transport is not None else None
        remote = peer[0] if isinstance(peer, tuple) else None
        self._rejections.rejected(status, reason, remote, request_id)
        self._metrics.requests.labels("other", "other", str(status)).inc()
        if transport is None or transport.is_closing():
            return
        detail = {"max_header_size": self._max_head} if status == 431 else None
        code = "UNSUPPORTED" if status == 431 else "UNAVAILABLE"
        transport.write(raw_response(status, code, reason, detail, request_id=request_id))
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(_LINGER, transport.abort)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
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


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` gets its interim answer; any other expectation a 417 envelope.

    aiohttp runs this before the middlewares (RFC 9110 §10.1.1), so the refusal writes its own
    log line and request metric, as the parser rejections above do.
    """
    expect = request.headers.get("Expect", "")
    if expect.strip().lower() == "100-continue":
        if request.version >= HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim answer is not part of the response
        return None
    request_id = uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    reason = "only the 100-continue expectation is supported"
    log.warning("request_rejected", status=417, reason=reason, remote=request.remote)
    request.app[METRICS_KEY].requests.labels("other", "other", "417").inc()
    response = render_status(417, "UNSUPPORTED", reason)
    response.headers[REQUEST_ID_HEADER] = request_id
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
    limit = ConnectionLimit(limits.max_connections, metrics, HeapTrimmer())
    rejections = RejectionLog()
    kwargs = handler_kwargs(limits)

    def factory() -> GatewayRequestHandler:
        return GatewayRequestHandler(
            server,
            loop=loop,
            limit=limit,
            metrics=metrics,
            max_header_size=limits.max_header_size,
            header_timeout=limits.header_timeout,
            rejections=rejections,
            **kwargs,
        )

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
