"""Vault outages: stale secrets within max_stale, then 503; a hung Vault stalls nobody else."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.components.client import Response
from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.vault.conftest import GatewayFactory
from tests.vault.loopback import SilentListener
from tests.vault.openbao_setup import unique_path, write_secret
from tests.vault.pulls import (
    TestImage,
    assert_no_secrets,
    assert_pulled,
    gateway_config,
    metric,
    oci_error,
    pull,
    pull_blob,
    readiness,
    vault_upstream,
)

CACHE_TTL = 1.0
MAX_STALE = 3.0


def test_stopped_vault_serves_stale_secrets_then_fails_cleanly(
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """Vault stopped: pulls work for max_stale past freshness (ready, degraded), then 503."""
    with OpenBao.start(tmp_path / "openbao") as openbao:
        path = unique_path("outage")
        data = {"username": registry_htpasswd.username, "password": registry_htpasswd.password}
        write_secret(openbao.client(), path, data)
        vault = {"url": openbao.url, "cache_ttl": CACHE_TTL, "max_stale": MAX_STALE, "timeout": 1}
        gateway = start_gateway(
            gateway_config(vault, {"outage.test": vault_upstream(registry_htpasswd, path)}),
            env={"VAULT_TOKEN": "root"},
        )
        assert_pulled(pull(gateway, "outage.test", private_image), private_image)
        read_at = time.monotonic()
        assert readiness(gateway)[0] == 200

        openbao.stop()
        time.sleep(CACHE_TTL + 0.2)  # the cached secret is no longer fresh
        started = time.monotonic()
        assert_pulled(pull(gateway, "outage.test", private_image), private_image)
        waited = time.monotonic() - started
        print(f"\na pull waited {waited * 1000:.0f} ms while Vault was stopped (within max_stale)")
        assert waited < 1.0

        # Still serving from cache: ready, and the vault check says why it is degraded.
        status, body = readiness(gateway)
        assert status == 200 and body["checks"]["vault"].startswith("degraded: "), body
        stale = metric(gateway, "registry_gateway_credentials_stale_total", upstream="outage.test")
        assert stale >= 1
        assert (
            metric(
                gateway, "registry_gateway_vault_requests_total", operation="read", result="error"
            )
            >= 1
        )
        warnings = [
            line for line in gateway.log_lines() if line["event"] == "vault_credentials_stale"
        ]
        assert warnings and warnings[0]["level"] == "warning"

        # Keep pulling through the stale window; once it is over the pull fails cleanly.
        window_end = read_at + CACHE_TTL + MAX_STALE
        while time.monotonic() < window_end - 0.5:
            assert_pulled(pull(gateway, "outage.test", private_image), private_image)
            time.sleep(0.2)
        time.sleep(max(window_end - time.monotonic(), 0) + 0.3)
        started = time.monotonic()
        error = oci_error(pull(gateway, "outage.test", private_image), 503)
        assert time.monotonic() - started < 1.0
        assert error["code"] == "UNAVAILABLE"
        assert f"secret/{path}" in error["detail"]["reason"]
        assert readiness(gateway)[0] == 503

        # Vault back (dev mode: same root token, empty KV): ready again without any pull.
        openbao.restart()
        deadline = time.monotonic() + 15
        while readiness(gateway)[0] != 200:
            assert time.monotonic() < deadline, readiness(gateway)
            time.sleep(0.2)
        write_secret(openbao.client(), path, data)
        assert_pulled(pull(gateway, "outage.test", private_image), private_image)
    assert_no_secrets(gateway, [registry_htpasswd.password])


def test_sealed_vault_serves_stale_secrets(
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """A sealed Vault (503 from every call) is an outage too: the last good secret serves."""
    with OpenBao.start(tmp_path / "openbao") as openbao:
        path = unique_path("sealed")
        data = {"username": registry_htpasswd.username, "password": registry_htpasswd.password}
        write_secret(openbao.client(), path, data)
        vault = {"url": openbao.url, "cache_ttl": 0.5, "max_stale": 60}
        gateway = start_gateway(
            gateway_config(vault, {"sealed.test": vault_upstream(registry_htpasswd, path)}),
            env={"VAULT_TOKEN": "root"},
        )
        assert_pulled(pull(gateway, "sealed.test", private_image), private_image)
        openbao.client().adapter.put("/v1/sys/seal")
        time.sleep(0.7)
        assert_pulled(pull(gateway, "sealed.test", private_image), private_image)
        status, body = readiness(gateway)
        assert status == 200, body
        assert (
            body["checks"]["vault"].startswith("degraded: ")
            and "VaultDown" in body["checks"]["vault"]
        ), body
        assert metric(gateway, "registry_gateway_credentials_stale_total", upstream="sealed.test")
    assert_no_secrets(gateway, [registry_htpasswd.password])


def test_hung_vault_never_stalls_other_upstreams(
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """While Vault accepts and never answers, a static upstream's blob pull goes through."""
    with SilentListener() as hung_vault:
        upstreams = {
            "vaulted.test": vault_upstream(registry_htpasswd, unique_path("hung")),
            "static.test": {
                "url": registry_htpasswd.url,
                "credentials": {
                    "username": registry_htpasswd.username,
                    "password_env": "REGISTRY_PASSWORD",
                },
            },
        }
        vault = {"url": hung_vault.url, "timeout": 1}
        gateway = start_gateway(
            gateway_config(vault, upstreams),
            env={"VAULT_TOKEN": "root", "REGISTRY_PASSWORD": registry_htpasswd.password},
        )
        vaulted: list[Response] = []
        waiting = threading.Thread(
            target=lambda: vaulted.append(pull(gateway, "vaulted.test", private_image))
        )
        started = time.monotonic()
        waiting.start()
        time.sleep(0.2)  # the Vault-backed pull is now waiting on the hung Vault
        blob = pull_blob(gateway, "static.test", private_image)
        static_took = time.monotonic() - started
        assert blob.status == 200 and blob.body == private_image.layer
        assert waiting.is_alive(), "the Vault-backed pull should still be waiting"
        assert static_took < 1.0
        waiting.join(timeout=10)
        vault_took = time.monotonic() - started

    error = oci_error(vaulted[0], 503)
    assert error["code"] == "UNAVAILABLE"
    assert vault_took < 5.0  # bounded by the per-call timeout, not by the hung server
    status, body = readiness(gateway)
    assert status == 503 and body["checks"]["vault"] != "ok", body
    assert_no_secrets(gateway, [registry_htpasswd.password])
