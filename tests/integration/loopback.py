"""Small aiohttp apps on loopback, for what no real registry does on demand.

A `Recorder` middleware keeps every request an app received (method, Host, path, query,
headers), so a test can assert what the gateway sent and what it never sent. The apps run in
the test's event loop through pytest-aiohttp's `aiohttp_server`, on 127.0.0.1 or 127.0.0.2
(another host as far as HTTP origins go).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, MultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServerFactory = Callable[..., Awaitable[TestServer]]

OTHER_HOST = "127.0.0.2"
# A syntactically valid digest; the loopback apps never check content against it.
BLOB_DIGEST = "sha256:" + "ab" * 32


@dataclass(frozen=True)
class SeenRequest:
    method: str
    host: str
    path: str
    query: MultiDict[str]
    headers: CIMultiDict[str]


@dataclass
class Recorder:
    """Every request an app saw, in arrival order."""

    requests: list[SeenRequest] = field(default_factory=list)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(
            SeenRequest(
                request.method,
                request.host,
                request.path,
                MultiDict(request.query),
                CIMultiDict(request.headers),
            )
        )
        return await handler(request)

    def app(self) -> web.Application:
        return web.Application(middlewares=[self.middleware])

    def authorizations(self) -> list[str | None]:
        return [seen.headers.get("Authorization") for seen in self.requests]


def base_url(server: TestServer) -> str:
    """`http://host:port` of a loopback app, as an upstream URL."""
    return f"http://{server.host}:{server.port}"


def authority(server: TestServer) -> str:
    """`host:port`, the upstream key clients would use for it."""
    return f"{server.host}:{server.port}"


@dataclass
class StreamLog:
    """What a streaming handler managed to do: bytes written, and when the peer went away."""

    sent: int = 0
    started: float | None = None
    peer_closed_at: float | None = None

    def mark_closed(self) -> None:
        if self.peer_closed_at is None:
            self.peer_closed_at = time.monotonic()


PATTERN = bytes(range(256)) * 1024  # 256 KiB of cheap, non-compressible-looking filler


def body_bytes(size: int) -> bytes:
    """`size` bytes of the repeating pattern (the bytes a streaming handler sends)."""
    repeats, rest = divmod(size, len(PATTERN))
    return PATTERN * repeats + PATTERN[:rest]
