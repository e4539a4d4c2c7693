"""Each auth method logs the gateway in to a real OpenBao and a pull gets its secret.

The gateway's token only ever carries config/vault/gateway-policy.hcl (no `default` policy),
so every pull here also proves that policy is enough.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.vault.conftest import GatewayFactory
from tests.vault.loopback import ThreadedApp
from tests.vault.openbao_setup import (
    JWT_AUDIENCE,
    configure_jwt,
    configure_kubernetes,
    create_approle,
    create_token,
    self_signed_ca,
    service_account_jwt,
    sign_jwt,
    signing_key,
    unique_path,
    write_secret,
)
from tests.vault.pulls import (
    TestImage,
    assert_no_secrets,
    assert_pulled,
    gateway_config,
    oci_error,
    pull,
    readiness,
    vault_upstream,
)

UPSTREAM = "private.test"


def secret_for(openbao: OpenBao, registry: Registry, label: str) -> str:
    path = unique_path(label)
    write_secret(
        openbao.client(), path, {"username": registry.username, "password": registry.password}
    )
    return path


def config_for(
    openbao: OpenBao, registry: Registry, path: str, auth: dict[str, Any]
) -> dict[str, Any]:
    return gateway_config(
        {"url": openbao.url, "auth": auth, "cache_ttl": 60},
        {UPSTREAM: vault_upstream(registry, path)},
    )


def test_token_from_environment(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """auth.method token reads VAULT_TOKEN at start; /readyz reports Vault logged in."""
    path = secret_for(openbao, registry_htpasswd, "token-env")
    token = create_token(openbao.client(), ttl="1h")
    gateway = start_gateway(
        config_for(openbao, registry_htpasswd, path, {"method": "token"}),
        env={"VAULT_TOKEN": token},
    )
    assert_pulled(pull(gateway, UPSTREAM, private_image), private_image)
    status, body = readiness(gateway)
    assert status == 200 and body["checks"]["vault"] == "ok", body
    assert_no_secrets(gateway, [token, registry_htpasswd.password])


def test_token_file_is_reread_when_it_changes(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """A token file rewritten by Vault Agent is used from the next Vault call on."""
    path = secret_for(openbao, registry_htpasswd, "token-file")
    root = openbao.client()
    first = create_token(root, ttl="1h")
    token_file = tmp_path / "vault-token"
    token_file.write_text(first + "\n")
    config = config_for(
        openbao, registry_htpasswd, path, {"method": "token", "token_file": str(token_file)}
    )
    config["vault"]["cache_ttl"] = 0
    gateway = start_gateway(config)
    assert_pulled(pull(gateway, UPSTREAM, private_image), private_image)

    second = create_token(root, ttl="1h")
    token_file.write_text(second + "\n")
    os.utime(token_file, ns=(1, 2))  # a sure mtime change, whatever the clock granularity
    root.adapter.post("/v1/auth/token/revoke", json={"token": first})
    assert_pulled(pull(gateway, UPSTREAM, private_image), private_image)
    assert_no_secrets(gateway, [first, second, registry_htpasswd.password])


def test_approle_with_files_and_environment(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """AppRole logs in with role_id_file + secret_id_env, and with role_id + secret_id_file."""
    path = secret_for(openbao, registry_htpasswd, "approle")
    role_id, secret_id = create_approle(
        openbao.client(), f"gw-{uuid.uuid4().hex[:6]}", token_ttl="60s"
    )
    role_id_file = tmp_path / "role-id"
    role_id_file.write_text(role_id)
    secret_id_file = tmp_path / "secret-id"
    secret_id_file.write_text(secret_id + "\n")
    from_env = start_gateway(
        config_for(
            openbao,
            registry_htpasswd,
            path,
            {
                "method": "approle",
                "role_id_file": str(role_id_file),
                "secret_id_env": "GATEWAY_SECRET_ID",
            },
        ),
        env={"GATEWAY_SECRET_ID": secret_id},
    )
    from_files = start_gateway(
        config_for(
            openbao,
            registry_htpasswd,
            path,
            {
                "method": "approle",
                "role_id": role_id,
                "secret_id_file": str(secret_id_file),
            },
        )
    )
    for gateway in (from_env, from_files):
        assert_pulled(pull(gateway, UPSTREAM, private_image), private_image)
        assert_no_secrets(gateway, [role_id, secret_id, registry_htpasswd.password])
    assert openbao.count_requests("auth/approle/login") >= 2


def test_jwt_login_with_a_signed_token(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """The jwt method accepts a JWT signed by the key OpenBao trusts, read from jwt_file."""
    path = secret_for(openbao, registry_htpasswd, "jwt")
    key = signing_key()
    role = f"gw-{uuid.uuid4().hex[:6]}"
    configure_jwt(openbao.client(), key, role)
    token = sign_jwt(key, {"sub": "registry-gateway", "aud": JWT_AUDIENCE})
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(token)
    gateway = start_gateway(
        config_for(
            openbao,
            registry_htpasswd,
            path,
            {"method": "jwt", "role": role, "jwt_file": str(jwt_file)},
        )
    )
    assert_pulled(pull(gateway, UPSTREAM, private_image), private_image)
    assert openbao.count_requests("auth/jwt/login") >= 1
    assert_no_secrets(gateway, [token, registry_htpasswd.password])


def test_kubernetes_login_rereads_the_projected_token(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """The kubernetes method logs in via TokenReview and reads the rotated JWT at each login."""
    path = secret_for(openbao, registry_htpasswd, "kubernetes")
    key = signing_key()
    reviewed: list[str] = []

    async def token_review(request: web.Request) -> web.Response:
        # The API server's answer for a valid service-account token (authentication/v1).
        token = (await request.json())["spec"]["token"]
        reviewed.append(token)
        return web.json_response(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "status": {
                    "authenticated": True,
                    "user": {
                        "username": "system:serviceaccount:ci:registry-gateway",
                        "uid": "uid-1",
                    },
                },
            }
        )

    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", token_review)
    first = service_account_jwt(key, "ci", "registry-gateway", "uid-1")
    second = service_account_jwt(key, "ci", "registry-gateway", "uid-1")
    jwt_file = tmp_path / "serviceaccount-token"
    jwt_file.write_text(first)
    role = f"gw-{uuid.uuid4().hex[:6]}"
    with ThreadedApp(app) as kubernetes_api:
        # Short, non-renewable tokens: the gateway must log in again every couple of seconds.
        configure_kubernetes(
            openbao.client(),
            kubernetes_api.url,
            self_signed_ca(key),
            role,
            "ci",
            "registry-gateway",
            token_ttl="2s",
            token_max_ttl="2s",
        )
        config = config_for(
            openbao,
            registry_htpasswd,
            path,
            {"method": "kubernetes", "role": role, "jwt_file": str(jwt_file)},
        )
        config["vault"]["cache_ttl"] = 0.5
        gateway = start_gateway(config)
        assert_pulled(pull(gateway, UPSTREAM, private_image), private_image)
        assert first in reviewed

        jwt_file.write_text(second)  # the kubelet projects a fresh token
        deadline = time.monotonic() + 10
        while second not in reviewed:
            assert time.monotonic() < deadline, "the rotated JWT was never used for a login"
            assert_pulled(pull(gateway, UPSTREAM, private_image), private_image)
            time.sleep(0.2)
        assert_pulled(pull(gateway, UPSTREAM, private_image), private_image)
    assert_no_secrets(gateway, [first, second, registry_htpasswd.password])


def test_path_outside_the_policy_is_a_clear_502(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """The shipped policy reads only registries/*: another path is a 502 naming it, not a 503."""
    path = f"elsewhere/{uuid.uuid4().hex[:8]}"
    data = {"username": registry_htpasswd.username, "password": registry_htpasswd.password}
    write_secret(openbao.client(), path, data)
    token = create_token(openbao.client(), ttl="1h")
    gateway = start_gateway(
        config_for(openbao, registry_htpasswd, path, {"method": "token"}),
        env={"VAULT_TOKEN": token},
    )
    error = oci_error(pull(gateway, UPSTREAM, private_image), 502)
    assert error["code"] == "UNAVAILABLE"
    assert f"secret/{path}" in error["detail"]["reason"]
    assert "denied" in error["detail"]["reason"]
    assert readiness(gateway)[0] == 200  # logged in and reachable: only the policy is missing
    assert_no_secrets(gateway, [token, registry_htpasswd.password])
