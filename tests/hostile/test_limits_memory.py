"""What an anonymous caller can cost: request heads in total and in time, memory, /token forms.

The gateway runs as a real process; its resident set is read from /proc while hundreds of
connections send unfinished header blocks, and /healthz is asked throughout.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.connections import GatewayRequestHandler
from tests.components.registry import Registry
from tests.gateway_process import REPO_ROOT, GatewayProcess
from tests.hostile.conftest import gateway_config, log_problems
from tests.hostile.wire import HealthProbe, build, exchange, read_reply

MIB = 1 << 20
MAX_HEADER_SIZE = 32768
HEADER_TIMEOUT = 2
CONNECTIONS = 400
RSS_LIMIT = 256 * MIB
HEALTHZ_BUDGET = 0.1
FLOOD_HEALTHZ_LIMIT = 2.0


def rss(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, registry_open: Registry, auth_dir: Path
) -> Iterator[GatewayProcess]:
    """A token-mode gateway with the default head cap and a short head timeout."""
    config = gateway_config(
        registry_open, "token", auth_dir, max_connections=1024, header_timeout=HEADER_TIMEOUT
    )
    with GatewayProcess.start(tmp_path_factory.mktemp("limits-memory"), config) as process:
        yield process


def padded_head(total: int, *, finished: bool) -> bytes:
    """A GET /v2/ head of about ``total`` bytes in 4000-byte header lines."""
    lines = [b"GET /v2/ HTTP/1.1", b"Host: gateway.test"]
    for index in range(total // 4016):
        lines.append(f"X-Pad-{index:04d}: ".encode() + b"p" * 4000)
    head = b"\r\n".join(lines) + b"\r\n"
    return head + b"\r\n" if finished else head


def test_header_block_total_over_the_cap_is_431(gateway: GatewayProcess) -> None:
    """A head of ~48 KiB in lines each under max_field_size is refused 431 in the envelope."""
    reply = exchange(gateway.port, padded_head(48_000, finished=True))
    assert reply.status == 431, reply
    assert reply.envelope_codes() == ["UNSUPPORTED"]
    assert reply.json()["errors"][0]["detail"] == {"max_header_size": MAX_HEADER_SIZE}
    assert reply.headers["connection"] == "close"


def test_header_block_total_under_the_cap_is_served(gateway: GatewayProcess) -> None:
    """A head of ~30 KiB (under limits.max_header_size) is parsed and answered normally."""
    reply = exchange(gateway.port, padded_head(30_000, finished=True))
    assert reply.status == 401, reply  # token mode: /v2/ without a token
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_header_block_total_cap_applies_to_each_keepalive_request(
    gateway: GatewayProcess,
) -> None:
    """Three 24 KiB heads on one kept-alive connection are each served: the count restarts."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(padded_head(24_000, finished=True))
            assert read_reply(sock, time.perf_counter()).status == 401


def test_header_block_total_slow_head_times_out_with_408(gateway: GatewayProcess) -> None:
    """A head still unfinished limits.header_timeout after its first byte is answered 408."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        started = time.perf_counter()
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: gateway.test\r\n")
        for _ in range(3):  # trickling bytes does not extend the deadline
            time.sleep(0.5)
            sock.sendall(b"X-Slow: 1\r\n")
        reply = read_reply(sock, started)
    assert reply.status == 408, reply
    assert reply.envelope_codes() == ["UNAVAILABLE"]
    assert HEADER_TIMEOUT <= reply.seconds < HEADER_TIMEOUT + 2


def test_header_block_total_relies_on_aiohttp_internals_that_exist() -> None:
    """The head bound reads RequestHandler internals; an aiohttp upgrade must keep them."""
    slots = set().union(*(getattr(c, "__slots__", ()) for c in GatewayRequestHandler.__mro__))
    for name in ("_request_count", "_messages", "_upgraded", "_payload_parser"):
        assert name in slots, name


def test_header_block_total_400_connections_keep_rss_bounded(gateway: GatewayProcess) -> None:
    """400 connections with unfinished ~1 MiB heads: RSS < 256 MiB, falling back after."""
    pid = gateway.process.pid
    exchange(gateway.port, build("/v2/"))  # warm up: first-request imports and caches
    before = rss(pid)
    during: list[int] = []
    command = [sys.executable, "-m", "tests.hostile.flood", str(gateway.port), str(CONNECTIONS),
               str(MIB), "4"]  # fmt: skip
    with HealthProbe(gateway.port) as probe:
        attacker = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        while attacker.poll() is None:
            during.append(rss(pid))
            time.sleep(0.1)
        result = json.loads(attacker.communicate(timeout=60)[0])
    time.sleep(HEADER_TIMEOUT + 1)
    after = rss(pid)
    print(
        f"\nRSS before {before / MIB:.1f} MiB, peak during {max(during) / MIB:.1f} MiB, "
        f"VmHWM {rss(pid, 'VmHWM') / MIB:.1f} MiB, after {after / MIB:.1f} MiB; {result}; "
        f"/healthz worst {probe.worst * 1000:.1f} ms over {len(probe.latencies)} probes"
    )
    assert result == {"opened": CONNECTIONS, "answered": CONNECTIONS}
    assert rss(pid, "VmHWM") < RSS_LIMIT
    assert after < before + 24 * MIB
    # Setting up 400 connections that arrive at once is a burst of loop work of its own; the
    # loop must stay live through it (every probe answered), not hold 100 ms per probe.
    assert probe.worst < FLOOD_HEALTHZ_LIMIT, sorted(probe.latencies)[-5:]
    assert exchange(gateway.port, build("/v2/")).status == 401
    assert log_problems(gateway) == []


def test_token_form_1mib_is_refused_well_under_100ms(gateway: GatewayProcess) -> None:
    """A 1 MiB /token form, announced or chunked, is refused 400 in < 100 ms; /healthz is fast."""
    body = b"grant_type=password&username=alice&password=x&" + b"scope=" + b"s" * MIB
    announced = build("/token", method="POST", body=body,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    chunked = (
        b"POST /token HTTP/1.1\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    times: list[float] = []
    with HealthProbe(gateway.port) as probe:
        for _ in range(10):
            for request in (announced, chunked):
                reply = exchange(gateway.port, request)
                assert reply.status == 400, reply
                assert reply.json()["error"] == "invalid_request"
                times.append(reply.seconds)
    print(
        f"\n/token 1 MiB refusal: worst {max(times) * 1000:.1f} ms; "
        f"/healthz worst {probe.worst * 1000:.1f} ms over {len(probe.latencies)} probes"
    )
    assert max(times) < HEALTHZ_BUDGET
    assert probe.worst < HEALTHZ_BUDGET
