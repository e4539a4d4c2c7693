"""Raw HTTP/1.1 over a socket: what an attacker sends, bytes that no HTTP client would.

``exchange`` writes one request and reads one response (Content-Length, or until the close).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Header = tuple[str | bytes, str | bytes]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)

    def envelope_codes(self) -> list[str]:
        """The codes of an OCI error envelope; AssertionError when the body is none."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        errors = self.json()["errors"]
        assert isinstance(errors, list) and errors, self
        for error in errors:
            assert isinstance(error["code"], str) and isinstance(error["message"], str), self
        return [error["code"] for error in errors]


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def build(
    target: str | bytes,
    *,
    method: str = "GET",
    headers: Sequence[Header] | Mapping[str, str] = (),
    body: bytes = b"",
    host: str = "gateway.test",
) -> bytes:
    """One HTTP/1.1 request; header names and values go on the wire byte for byte."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    lines = [method.encode() + b" " + _bytes(target) + b" HTTP/1.1", b"Host: " + host.encode()]
    lines += [_bytes(name) + b": " + _bytes(value) for name, value in items]
    if body or method == "POST":
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def read_reply(sock: socket.socket, started: float, *, head_only: bool = False) -> Reply:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    if status == 100:  # an interim answer: the real one follows
        return read_reply_after(sock, started, body)
    if not head_only:
        length = headers.get("content-length")
        while length is None or len(body) < int(length):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return Reply(status, headers, body, time.perf_counter() - started)


def read_reply_after(sock: socket.socket, started: float, rest: bytes) -> Reply:
    class _Prefixed:
        def __init__(self) -> None:
            self.rest = rest

        def recv(self, size: int) -> bytes:
            if self.rest:
                data, self.rest = self.rest, b""
                return data
            return sock.recv(size)

    return read_reply(_Prefixed(), started)  # type: ignore[arg-type]


def exchange(port: int, request: bytes, *, timeout: float = 30.0, head_only: bool = False) -> Reply:
    """Send ``request`` on a fresh connection and read the one response."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_reply(sock, started, head_only=head_only)


class HealthProbe:
    """Asks ``/healthz`` every ``interval`` seconds on a kept-alive connection, in a thread.

    ``latencies`` holds each answer's time in seconds; a missing or non-200 answer counts as
    ``inf``. Used as a context manager around whatever should not stall the event loop.
    """

    def __init__(self, port: int, interval: float = 0.02) -> None:
        self.port = port
        self.interval = interval
        self.latencies: list[float] = []
        self.slow: list[tuple[float, float]] = []  # (wall-clock start, seconds) over 100 ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        request = b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n"
        sock: socket.socket | None = None
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sock.sendall(request)
                reply = read_reply(sock, started)
                ok = reply.status == 200
            except OSError:
                ok = False
                if sock is not None:
                    sock.close()
                sock = None
            latency = time.perf_counter() - started if ok else float("inf")
            self.latencies.append(latency)
            if latency > 0.1:
                self.slow.append((time.time() - latency, latency))
            self._stop.wait(self.interval)
        if sock is not None:
            sock.close()

    @property
    def worst(self) -> float:
        return max(self.latencies)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]

    def summary(self) -> str:
        ordered = sorted(self.latencies)
        if not ordered:
            return "no probes"
        p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
        return (
            f"{len(ordered)} probes, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"worst {ordered[-1] * 1000:.1f} ms"
        )

    def over(self, seconds: float) -> list[float]:
        return [latency for latency in self.latencies if latency > seconds]
