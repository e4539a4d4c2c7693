"""Limits on what one caller can cost, against a real gateway process over raw sockets.

Oversize request lines and header fields, too many headers and malformed HTTP get a 4xx with
the OCI envelope and an X-Request-ID, never a crash or a traceback; past
``limits.max_connections`` open connections a caller gets 503 and Retry-After; idle
connections are closed after ``limits.keepalive_timeout``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import ConfigError, LimitsSettings, parse_settings
from tests.gateway_process import GatewayProcess

MAX_CONNECTIONS = 4
MAX_LINE = 1024
MAX_FIELD = 1024
MAX_HEADERS = 16
KEEPALIVE = 3.0
SECRET_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsaW1pdHMtdGVzdCJ9.c2VjcmV0LXNpZ25hdHVyZQ"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def envelope(self) -> dict[str, Any]:
        assert self.headers["content-type"].startswith("application/json")
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway with small limits; its upstream is never contacted by these tests."""
    config = {
        "upstreams": {"docker.io": {"url": "https://registry-1.docker.io"}},
        "limits": {
            "max_connections": MAX_CONNECTIONS,
            "max_line_size": MAX_LINE,
            "max_field_size": MAX_FIELD,
            "max_headers": MAX_HEADERS,
            "keepalive_timeout": KEEPALIVE,
        },
    }
    with GatewayProcess.start(tmp_path_factory.mktemp("limits"), config) as process:
        yield process


def connect(gateway: GatewayProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.port), timeout=10)


def read_reply(sock: socket.socket) -> Reply:
    """Read one HTTP response (with Content-Length) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Reply(int(status_line.split()[1]), headers, body)


def exchange(gateway: GatewayProcess, request: bytes) -> Reply:
    with connect(gateway) as sock:
        sock.sendall(request)
        return read_reply(sock)


def request(
    path: str = "/v2/", *, method: str = "GET", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway.test"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def assert_rejected(reply: Reply, status: int) -> None:
    assert reply.status == status, reply
    [error] = reply.envelope()["errors"]
    assert error["code"] and error["message"]
    assert len(reply.headers["x-request-id"]) == 32
    assert reply.headers.get("connection", "").lower() == "close"


def test_request_line_too_long_gets_414(gateway: GatewayProcess) -> None:
    """A request line over max_line_size is answered 414 with the OCI envelope."""
    reply = exchange(gateway, request(f"/v2/{'a' * (MAX_LINE + 100)}/manifests/latest"))
    assert_rejected(reply, 414)


def test_header_field_too_long_gets_431(gateway: GatewayProcess) -> None:
    """A header field over max_field_size is answered 431 with the OCI envelope."""
    reply = exchange(gateway, request(headers={"X-Padding": "p" * (MAX_FIELD + 100)}))
    assert_rejected(reply, 431)


def test_too_many_headers_gets_431(gateway: GatewayProcess) -> None:
    """More than max_headers header fields are answered 431."""
    headers = {f"X-Header-{i}": "v" for i in range(MAX_HEADERS + 4)}
    assert_rejected(exchange(gateway, request(headers=headers)), 431)


def test_malformed_request_gets_400(gateway: GatewayProcess) -> None:
    """A request aiohttp cannot parse (bad Content-Length) is answered 400 with the envelope."""
    reply = exchange(gateway, request(headers={"Content-Length": "twelve"}))
    assert_rejected(reply, 400)


def test_oversize_credentials_are_not_echoed_or_logged(gateway: GatewayProcess) -> None:
    """An oversize Authorization header is refused without quoting it, in the reply or the log."""
    value = f"Bearer {SECRET_TOKEN}{'x' * (MAX_FIELD + 100)}"
    reply = exchange(gateway, request(headers={"Authorization": value}))
    assert_rejected(reply, 431)
    assert SECRET_TOKEN[:24].encode() not in reply.body
    assert SECRET_TOKEN[:24] not in gateway.log_text()


def test_unknown_method_is_a_bounded_metric_label(gateway: GatewayProcess) -> None:
    """An unusual method gets 405 and is counted as method="other", never by its own name."""
    reply = exchange(gateway, request(method="PROPFIND"))
    assert reply.status == 405
    metrics = exchange(gateway, request("/metrics")).body.decode()
    assert "PROPFIND" not in metrics
    assert 'registry_gateway_requests_total{code="405",method="other",route="base"} 1.0' in metrics


def test_connections_past_the_limit_get_503(gateway: GatewayProcess) -> None:
    """With max_connections open, the next caller gets 503 + Retry-After; a freed slot is reused."""
    held = [connect(gateway) for _ in range(MAX_CONNECTIONS)]
    try:
        # Each held connection has been accepted (and counted) once it answers a request.
        for sock in held:
            sock.sendall(request("/healthz"))
            assert read_reply(sock).status == 200
        refused = exchange(gateway, request())
        assert_rejected(refused, 503)
        assert refused.headers["retry-after"] == "1"
        assert refused.envelope()["errors"][0]["detail"] == {"max_connections": MAX_CONNECTIONS}
        held.pop().close()
        deadline = time.monotonic() + 5
        while (reply := exchange(gateway, request("/healthz"))).status == 503:
            assert time.monotonic() < deadline, "the freed connection slot was never reused"
            time.sleep(0.05)
        assert reply.status == 200
    finally:
        for sock in held:
            sock.close()
    metrics = exchange(gateway, request("/metrics")).body.decode()
    assert "registry_gateway_connections_rejected_total 1.0" in metrics


def test_idle_keepalive_connection_is_closed(gateway: GatewayProcess) -> None:
    """After a response, an idle kept-alive connection is closed after keepalive_timeout."""
    with connect(gateway) as sock:
        sock.sendall(request("/healthz"))
        assert read_reply(sock).status == 200
        idle_since = time.monotonic()
        assert sock.recv(1) == b""
        assert KEEPALIVE * 0.5 <= time.monotonic() - idle_since <= KEEPALIVE + 2


def test_silent_connection_is_closed(gateway: GatewayProcess) -> None:
    """A connection that never sends a request is closed after keepalive_timeout too."""
    with connect(gateway) as sock:
        opened = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - opened <= KEEPALIVE + 2


def test_gateway_survives_and_logs_no_traceback(gateway: GatewayProcess) -> None:
    """After oversize and malformed input the process serves on; its log has no traceback."""
    exchange(gateway, request(f"/v2/{'a' * (MAX_LINE + 100)}/manifests/latest"))
    exchange(gateway, request(headers={"X-Padding": "p" * (MAX_FIELD + 100)}))
    exchange(gateway, request(headers={"Content-Length": "twelve"}))
    assert gateway.process.alive()
    assert exchange(gateway, request("/healthz")).status == 200
    lines = gateway.log_lines()
    assert not [line for line in lines if line["level"] in ("error", "critical")]
    assert not [line for line in lines if "exception" in line]
    rejected = sorted(line["status"] for line in lines if line["event"] == "request_rejected")
    assert {400, 414, 431} <= set(rejected)
    assert all(
        len(line["request_id"]) == 32 for line in lines if line["event"] == "request_rejected"
    )


def _limits(raw: dict[str, Any]) -> LimitsSettings:
    data = {"upstreams": {"docker.io": {"url": "https://registry-1.docker.io"}}, "limits": raw}
    return parse_settings(data, environ={}, base_dir=Path("."), source="test").limits


def test_limits_have_sensible_defaults() -> None:
    """Without a limits section: 1024 connections, 8190-byte lines and fields, 128 headers, 75 s."""
    assert _limits({}) == LimitsSettings(
        max_connections=1024,
        max_line_size=8190,
        max_field_size=8190,
        max_headers=128,
        keepalive_timeout=75.0,
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"max_connections": 0}, "limits.max_connections: must be at least 1"),
        ({"max_line_size": 100}, "limits.max_line_size: must be at least 256"),
        ({"max_field_size": 1.5}, "limits.max_field_size: must be a whole number"),
        ({"max_headers": 2}, "limits.max_headers: must be at least 8"),
        ({"keepalive_timeout": 0}, "limits.keepalive_timeout: must be at least 1"),
        ({"max_body": 1}, "limits.max_body: unknown key"),
    ],
)
def test_bad_limits_are_config_errors(raw: dict[str, Any], problem: str) -> None:
    """Each unusable limit is reported with its key path; nothing starts half-limited."""
    with pytest.raises(ConfigError) as caught:
        _limits(raw)
    assert problem in caught.value.problems
