"""Answers to callers whose request never reached the app, and the line they leave in the log.

The connection layer (connections.py) refuses some callers before aiohttp has a request for
them: over the connection cap, a request head too large or too slow. They get a raw HTTP/1.1
answer with the OCI envelope and ``Connection: close``, and a ``request_rejected`` line,
rate-limited so a flood of refusals cannot write the log.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from .errors import API_VERSION_HEADER, envelope
from .log import get_logger

log = get_logger("gateway.connections")

REQUEST_ID_HEADER = "X-Request-ID"
_HEAD_END = b"\r\n\r\n"
_REASONS = {
    408: "Request Timeout",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def raw_response(
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    *,
    request_id: str | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    """A raw HTTP/1.1 error answer with the OCI envelope, for connections with no request."""
    body = envelope(code, message, detail)
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        **(extra or {}),
        "Connection": "close",
        REQUEST_ID_HEADER: request_id or uuid.uuid4().hex,
        **API_VERSION_HEADER,
    }
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status} {_REASONS[status]}\r\n{head}\r\n".encode("ascii") + body


def refusal_response(maximum: int) -> bytes:
    """The raw HTTP/1.1 503 a caller over the connection cap receives before the close."""
    return raw_response(
        503,
        "UNAVAILABLE",
        "too many connections to the gateway; retry shortly",
        {"max_connections": maximum},
        extra={"Retry-After": "1"},
    )


def head_ends_within(tail: bytes, data: bytes, room: int) -> bool:
    """Whether a request head, of which ``tail`` are the last bytes so far, ends in ``data``
    within ``room`` more bytes (the blank line that ends it included)."""
    return _HEAD_END in tail[-3:] + data[: max(room, 0)]


class RejectionLog:
    """``request_rejected`` lines for refused request heads, at most one per reason a second.

    A flood of unfinished heads is refused in bursts (hundreds of timers fire in one loop
    iteration); a line per connection would cost the loop more than the refusals themselves,
    and would let the flood write the log. The lines in between are counted into the next
    one's ``suppressed``; the request metric still counts every refusal.
    """

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._last: dict[int, float] = {}
        self._suppressed: dict[int, int] = {}

    def rejected(self, status: int, reason: str, remote: str | None, request_id: str) -> None:
        now = self._clock()
        last = self._last.get(status)
        if last is not None and now - last < self._interval:
            self._suppressed[status] = self._suppressed.get(status, 0) + 1
            return
        self._last[status] = now
        suppressed = self._suppressed.pop(status, 0)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        log.warning(
            "request_rejected", status=status, reason=reason, remote=remote, suppressed=suppressed
        )
