"""The gateway's Vault token: renewed while renewable, replaced at its max TTL or when revoked.

Each test runs its own OpenBao, so the audit log counts only this gateway's logins and renewals.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.vault.conftest import GatewayFactory
from tests.vault.openbao_setup import create_approle, unique_path, write_secret
from tests.vault.pulls import (
    TestImage,
    assert_no_secrets,
    assert_pulled,
    gateway_config,
    metric,
    pull,
    vault_upstream,
)

UPSTREAM = "lifecycle.test"


@pytest.fixture
def own_openbao(tmp_path: Path) -> Iterator[OpenBao]:
    """A private OpenBao for this test alone."""
    with OpenBao.start(tmp_path / "openbao") as server:
        yield server


def approle_gateway(
    openbao: OpenBao,
    registry: Registry,
    start_gateway: GatewayFactory,
    **token: str,
) -> tuple[GatewayProcess, list[str]]:
    """A gateway logging in with a fresh AppRole whose tokens have these settings."""
    root = openbao.client()
    path = unique_path("lifecycle")
    write_secret(root, path, {"username": registry.username, "password": registry.password})
    role_id, secret_id = create_approle(root, f"gw-{uuid.uuid4().hex[:6]}", **token)
    auth = {"method": "approle", "role_id": role_id, "secret_id_env": "GATEWAY_SECRET_ID"}
    vault = {"url": openbao.url, "auth": auth, "cache_ttl": 0.3}
    gateway = start_gateway(
        gateway_config(vault, {UPSTREAM: vault_upstream(registry, path)}),
        env={"GATEWAY_SECRET_ID": secret_id},
    )
    return gateway, [role_id, secret_id, registry.password]


def keep_pulling(gateway: GatewayProcess, image: TestImage, seconds: float) -> int:
    """Pull every 200 ms for `seconds`; every pull must succeed. Returns the pull count."""
    pulls = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert_pulled(pull(gateway, UPSTREAM, image), image)
        pulls += 1
        time.sleep(0.2)
    return pulls


def test_short_ttl_token_is_renewed_and_pulls_outlive_it(
    own_openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """A renewable 3 s token is renewed at ~2 s, so pulls keep working well past 3 s, one login."""
    gateway, secrets = approle_gateway(
        own_openbao, registry_htpasswd, start_gateway, token_ttl="3s", token_max_ttl="1h"
    )
    keep_pulling(gateway, private_image, 5.0)
    # Pulls ran for 5 s on a 3 s token: it was renewed (at ~2 s and ~4 s), never replaced.
    assert own_openbao.count_requests("auth/token/renew-self") >= 1
    assert own_openbao.count_requests("auth/approle/login") == 1
    requests = "registry_gateway_vault_requests_total"
    assert metric(gateway, requests, operation="renew", result="ok") >= 1
    assert metric(gateway, requests, operation="renew", result="error") == 0
    durations = "registry_gateway_vault_request_duration_seconds_count"
    assert metric(gateway, durations, operation="read") >= 5
    assert_no_secrets(gateway, secrets)


def test_max_ttl_forces_a_new_login(
    own_openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """A token capped at 4 s is replaced by a fresh login before it dies; pulls never fail."""
    gateway, secrets = approle_gateway(
        own_openbao, registry_htpasswd, start_gateway, token_ttl="2s", token_max_ttl="4s"
    )
    keep_pulling(gateway, private_image, 6.0)
    assert own_openbao.count_requests("auth/approle/login") >= 2
    assert own_openbao.count_requests("auth/token/renew-self") >= 1
    assert (
        metric(gateway, "registry_gateway_vault_requests_total", operation="login", result="ok")
        >= 2
    )
    assert_no_secrets(gateway, secrets)


def test_revoked_token_means_one_login_and_one_retry(
    own_openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """A read refused with 403 (token revoked) logs in once and retries; the pull succeeds."""
    gateway, secrets = approle_gateway(
        own_openbao, registry_htpasswd, start_gateway, token_ttl="1h"
    )
    assert_pulled(pull(gateway, UPSTREAM, private_image), private_image)
    root = own_openbao.client()
    for accessor in root.adapter.list("/v1/auth/token/accessors")["data"]["keys"]:
        info = root.adapter.post("/v1/auth/token/lookup-accessor", json={"accessor": accessor})
        if info["data"]["path"].startswith("auth/approle/login"):
            root.adapter.post("/v1/auth/token/revoke-accessor", json={"accessor": accessor})
    time.sleep(0.4)  # past cache_ttl: the next pull reads Vault with the revoked token

    answer = pull(gateway, UPSTREAM, private_image)
    assert_pulled(answer, private_image)
    assert own_openbao.count_requests("auth/approle/login") == 2
    request_id = answer.headers["X-Request-ID"]
    refused = [line for line in gateway.log_lines() if line["event"] == "vault_read_forbidden"]
    # Logged from the Vault worker thread, still carrying the request's id.
    assert [line.get("request_id") for line in refused] == [request_id]
    assert_no_secrets(gateway, secrets)
