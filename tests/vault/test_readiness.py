"""/readyz checks Vault on its own: an idle gateway notices a stopped OpenBao within bounds.

The documented bounds (README "Vault / OpenBao"): the check runs every ``vault.check_interval``
seconds and a failed call ends within ``vault.timeout``, so the vault check turns degraded
(cached secrets) or failing within ``check_interval + timeout``; degraded turns into 503 once
the outage is ``max_stale`` old.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.vault.conftest import GatewayFactory
from tests.vault.openbao_setup import create_token, unique_path, write_secret
from tests.vault.pulls import TestImage, assert_pulled, gateway_config, pull, readiness

CHECK_INTERVAL = 1.0
TIMEOUT = 1.0
MAX_STALE = 4.0
SLACK = 1.0  # process scheduling and the poll below


def wait_for_vault_check(gateway: Any, want: str, limit: float) -> tuple[float, int, str]:
    """Poll /readyz until the vault check reads `want` ("ok", "degraded" or "failing")."""
    started = time.monotonic()
    while True:
        status, body = readiness(gateway)
        check = body["checks"]["vault"]
        kind = (
            "ok" if check == "ok" else "degraded" if check.startswith("degraded: ") else ("failing")
        )
        if kind == want:
            return time.monotonic() - started, status, check
        assert time.monotonic() - started < limit, (status, body)
        time.sleep(0.1)


def test_idle_gateway_turns_degraded_then_not_ready_when_vault_stops(
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """No pulls after Vault stops: degraded within check_interval + timeout, 503 after max_stale."""
    with OpenBao.start(tmp_path / "openbao") as openbao:
        path = unique_path("idle")
        data = {"username": registry_htpasswd.username, "password": registry_htpasswd.password}
        write_secret(openbao.client(), path, data)
        vault = {
            "url": openbao.url,
            "timeout": TIMEOUT,
            "check_interval": CHECK_INTERVAL,
            "max_stale": MAX_STALE,
        }
        upstream = {"url": registry_htpasswd.url, "credentials": {"vault": {"path": path}}}
        gateway = start_gateway(
            gateway_config(vault, {"idle.test": upstream}),
            env={"VAULT_TOKEN": create_token(openbao.client())},
        )
        assert_pulled(pull(gateway, "idle.test", private_image), private_image)
        assert readiness(gateway) == (200, {"status": "ready", "checks": {
            "draining": "ok", "vault": "ok"}})  # fmt: skip

        openbao.stop()  # from here on, no pull: only /readyz is asked
        took, status, check = wait_for_vault_check(
            gateway, "degraded", CHECK_INTERVAL + TIMEOUT + SLACK
        )
        print(f"\ndegraded {took:.2f}s after Vault stopped: {check}")
        assert status == 200 and "serving cached secrets" in check
        assert "unreachable" in check or "connection failed" in check

        took_503, status, check = wait_for_vault_check(gateway, "failing", MAX_STALE + SLACK)
        print(f"not ready {took + took_503:.2f}s after Vault stopped: {check}")
        assert status == 503
        assert readiness(gateway)[1]["status"] == "not ready"
        events = [line["event"] for line in gateway.log_lines()]
        assert "vault_check_failed" in events


def test_idle_gateway_without_cached_secrets_is_not_ready_when_vault_stops(
    registry_htpasswd: Registry, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Logged in but nothing read yet: a stopped Vault fails the check with no degraded phase."""
    with OpenBao.start(tmp_path / "openbao") as openbao:
        upstream = {"url": registry_htpasswd.url, "credentials": {"vault": {"path": "x/y"}}}
        vault = {"url": openbao.url, "timeout": TIMEOUT, "check_interval": CHECK_INTERVAL}
        # The dev server's root token survives its restart below; a created token would not.
        gateway = start_gateway(
            gateway_config(vault, {"idle.test": upstream}), env={"VAULT_TOKEN": "root"}
        )
        wait_for_vault_check(gateway, "ok", 10)
        openbao.stop()
        took, status, check = wait_for_vault_check(
            gateway, "failing", CHECK_INTERVAL + TIMEOUT + SLACK
        )
        print(f"\nnot ready {took:.2f}s after Vault stopped: {check}")
        assert status == 503

        openbao.restart()
        wait_for_vault_check(gateway, "ok", 15)  # back without a pull (dev mode, same root)
