"""Routine client behaviour stays out of warnings; /metrics has no `*_created` series."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from tests.components import client, skopeo
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.vault.pulls import push_image


def test_skopeo_tls_probe_is_logged_at_debug_not_as_a_warning(
    registry_open: Registry, tmp_path: Path
) -> None:
    """skopeo --tls-verify=false tries HTTPS first: a debug line says so, no warning."""
    image = push_image(registry_open, "quiet/app")
    config = {
        "upstreams": {"open.test": {"url": registry_open.url}},
        "log": {"format": "json", "level": "debug"},
    }
    gateway = GatewayProcess.start(tmp_path / "gateway", config)
    try:
        raw = skopeo.inspect_raw(f"docker://{gateway.host}/open.test/{image.repo}:{image.tag}")
        assert raw  # the pull itself worked over plain HTTP after the probe
        lines = gateway.log_lines()
    finally:
        gateway.stop()
    probes = [line for line in lines if line["event"] == "tls_on_plain_http"]
    assert probes, "skopeo's TLS probe was not recognised"
    assert all(line["level"] == "debug" for line in probes)
    assert "TLS ClientHello" in probes[0]["reason"]
    assert not [line for line in lines if line["level"] in ("warning", "error")], lines


def test_garbage_that_is_not_tls_is_still_a_warning(
    registry_open: Registry, tmp_path: Path
) -> None:
    """A malformed plain request keeps its request_rejected warning and 400."""
    gateway = GatewayProcess.start(
        tmp_path / "gateway", {"upstreams": {"open.test": {"url": registry_open.url}}}
    )
    try:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
            sock.sendall(b"\x00\x01NOT HTTP\r\n\r\n")
            answer = sock.recv(4096)
        assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
        # A real TLS client against the plain port fails its handshake, quietly for us.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
            try:
                context.wrap_socket(sock).close()
                handshake_failed = False
            except ssl.SSLError:
                handshake_failed = True
        assert handshake_failed
    finally:
        gateway.stop()
    lines = gateway.log_lines()
    rejected = [line for line in lines if line["event"] == "request_rejected"]
    assert len(rejected) == 1 and rejected[0]["level"] == "warning"
    assert rejected[0]["reason"] == "malformed HTTP request"


def test_metrics_have_no_created_series(registry_open: Registry, tmp_path: Path) -> None:
    """Counters and histograms expose no `_created` samples (they double the series count)."""
    gateway = GatewayProcess.start(
        tmp_path / "gateway", {"upstreams": {"open.test": {"url": registry_open.url}}}
    )
    try:
        client.send(f"{gateway.url}/v2/")
        text = client.send(f"{gateway.url}/metrics").body.decode()
    finally:
        gateway.stop()
    assert "registry_gateway_requests_total{" in text
    assert "registry_gateway_request_duration_seconds_bucket{" in text
    assert "_created" not in text
