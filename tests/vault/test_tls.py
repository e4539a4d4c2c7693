"""Vault over HTTPS: ca_file trusts a private CA, verification refuses an unknown one."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.components.openbao import ROOT_TOKEN, bao_env, find_bao
from tests.components.ports import LOOPBACK, free_port, wait_until
from tests.components.process import ManagedProcess
from tests.components.registry import Registry
from tests.vault.conftest import GatewayFactory
from tests.vault.pulls import (
    TestImage,
    assert_pulled,
    gateway_config,
    oci_error,
    pull,
    readiness,
    vault_upstream,
)

PATH = "registries/tls"


@dataclass(frozen=True)
class TlsOpenBao:
    url: str
    ca_file: Path


@pytest.fixture
def tls_openbao(tmp_path: Path) -> Iterator[TlsOpenBao]:
    """`bao server -dev -dev-tls`: HTTPS with a CA generated into tmp_path/certs."""
    certs = tmp_path / "certs"
    certs.mkdir()
    port = free_port(span=2)
    process = ManagedProcess.spawn(
        "bao-tls",
        [
            find_bao(),
            "server",
            "-dev",
            "-dev-tls",
            f"-dev-tls-cert-dir={certs}",
            f"-dev-root-token-id={ROOT_TOKEN}",
            "-dev-no-store-token",
            f"-dev-listen-address={LOOPBACK}:{port}",
        ],
        log_path=tmp_path / "bao-tls.log",
        cwd=tmp_path,
        env=bao_env(tmp_path),
    )
    server = TlsOpenBao(f"https://{LOOPBACK}:{port}", certs / "vault-ca.pem")
    try:
        if not wait_until(lambda: _kv_ready(server), timeout=20, alive=process.alive):
            raise process.startup_error("the TLS dev server never mounted secret/")
        yield server
    finally:
        process.stop()


def _kv_ready(server: TlsOpenBao) -> bool:
    if not server.ca_file.exists():
        return False
    context = ssl.create_default_context(cafile=str(server.ca_file))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    request = urllib.request.Request(
        f"{server.url}/v1/sys/mounts/secret", headers={"X-Vault-Token": ROOT_TOKEN}
    )
    try:
        with opener.open(request, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _write_secret(server: TlsOpenBao, registry: Registry) -> None:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    body = {"data": {"username": registry.username, "password": registry.password}}
    request = urllib.request.Request(
        f"{server.url}/v1/secret/data/{PATH}",
        data=json.dumps(body).encode(),
        headers={"X-Vault-Token": ROOT_TOKEN, "Content-Type": "application/json"},
        method="POST",
    )
    with opener.open(request, timeout=5) as response:
        assert response.status == 200


def test_ca_file_and_tls_verify(
    tls_openbao: TlsOpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """ca_file: pulls work; no ca_file: the unknown CA is refused (503); tls_verify false: works."""
    _write_secret(tls_openbao, registry_htpasswd)
    upstreams = {"tls.test": vault_upstream(registry_htpasswd, PATH)}
    env = {"VAULT_TOKEN": ROOT_TOKEN}
    trusted = start_gateway(
        gateway_config({"url": tls_openbao.url, "ca_file": str(tls_openbao.ca_file)}, upstreams),
        env=env,
    )
    assert_pulled(pull(trusted, "tls.test", private_image), private_image)

    untrusted = start_gateway(gateway_config({"url": tls_openbao.url}, upstreams), env=env)
    error = oci_error(pull(untrusted, "tls.test", private_image), 503)
    assert error["code"] == "UNAVAILABLE"
    status, body = readiness(untrusted)
    assert status == 503 and "connection failed" in body["checks"]["vault"], body

    unverified = start_gateway(
        gateway_config({"url": tls_openbao.url, "tls_verify": False}, upstreams), env=env
    )
    assert_pulled(pull(unverified, "tls.test", private_image), private_image)
    # One explicit warning, and no urllib3 warning text breaking the JSON log.
    events = [line["event"] for line in unverified.log_lines()]
    assert events.count("vault_tls_verify_disabled") == 1
