"""KV v1 and v2, every secret format, and the errors for missing or malformed secrets."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from tests.components import client
from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.vault.conftest import GatewayFactory
from tests.vault.openbao_setup import enable_kv_v1, enable_once, unique_path, write_secret
from tests.vault.pulls import (
    TestImage,
    assert_no_secrets,
    assert_pulled,
    gateway_config,
    oci_error,
    pull,
    push_image,
    vault_upstream,
)


@pytest.fixture(scope="module")
def token_image(registry_token: Registry) -> TestImage:
    """An image in the shared registry whose token server issues Bearer tokens."""
    return push_image(registry_token, "vault-suite/token-app")


def basic_auth(registry: Registry) -> str:
    return base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()


def formats(basic: Registry, bearer: Registry, image: TestImage) -> dict[str, dict[str, Any]]:
    """One secret per format, keyed by the upstream that uses it."""
    token = client.fetch_token(bearer, client.pull_scope(image.repo))
    docker_config = {"auths": {basic.host: {"auth": basic_auth(basic)}}}
    return {
        "userpass.test": {"username": basic.username, "password": basic.password},
        "token.test": {"token": token},
        "auth.test": {"auth": basic_auth(basic)},
        "dockerconfig.test": {".dockerconfigjson": json.dumps(docker_config)},
    }


@pytest.mark.parametrize("kv_version", [2, 1])
def test_every_format_from_kv_version(
    kv_version: int,
    openbao: OpenBao,
    registry_htpasswd: Registry,
    registry_token: Registry,
    private_image: TestImage,
    token_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """username+password, token, auth and .dockerconfigjson secrets each pull, on KV v1 and v2."""
    root = openbao.client()
    mount = "secret" if kv_version == 2 else "kv"
    if kv_version == 1:
        enable_kv_v1(root, mount)
    secrets = formats(registry_htpasswd, registry_token, token_image)
    upstreams = {}
    for key, data in secrets.items():
        path = unique_path(key.split(".")[0])
        write_secret(root, path, data, mount=mount, version=kv_version)
        registry = registry_token if key == "token.test" else registry_htpasswd
        upstreams[key] = vault_upstream(registry, path)
    vault = {"url": openbao.url, "kv_version": kv_version, "kv_mount": mount}
    gateway = start_gateway(gateway_config(vault, upstreams), env={"VAULT_TOKEN": "root"})
    for key in upstreams:
        image = token_image if key == "token.test" else private_image
        assert_pulled(pull(gateway, key, image), image)
    assert_no_secrets(
        gateway,
        [registry_htpasswd.password, registry_token.password, secrets["token.test"]["token"]],
    )


def test_mount_per_upstream_overrides_kv_mount(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """credentials.vault.mount reads from another KV v2 mount than vault.kv_mount."""
    root = openbao.client()
    enable_once(root, "mounts", "team-kv", type="kv", options={"version": "2"})
    path = unique_path("mounted")
    data = {"username": registry_htpasswd.username, "password": registry_htpasswd.password}
    write_secret(root, path, data, mount="team-kv")
    upstreams = {"mounted.test": vault_upstream(registry_htpasswd, path, mount="team-kv")}
    gateway = start_gateway(
        gateway_config({"url": openbao.url}, upstreams), env={"VAULT_TOKEN": "root"}
    )
    assert_pulled(pull(gateway, "mounted.test", private_image), private_image)


def test_missing_and_malformed_secrets_fail_clearly_then_recover(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """A missing or unusable secret is a 502 naming the path; a fixed one works at once."""
    root = openbao.client()
    path = unique_path("broken")
    upstreams = {"broken.test": vault_upstream(registry_htpasswd, path)}
    config = gateway_config({"url": openbao.url, "cache_ttl": 300}, upstreams)
    gateway = start_gateway(config, env={"VAULT_TOKEN": "root"})

    error = oci_error(pull(gateway, "broken.test", private_image), 502)
    assert error["code"] == "UNAVAILABLE"
    assert f"secret/{path}" in error["detail"]["reason"]

    write_secret(root, path, {"username": "robot", "passwd": "hunter2-typo"})
    error = oci_error(pull(gateway, "broken.test", private_image), 502)
    assert error["code"] == "UNAVAILABLE"
    assert f"secret/{path}" in error["detail"]["reason"]
    assert "holds none of" in error["detail"]["reason"]
    assert "hunter2" not in json.dumps(error)

    data = {"username": registry_htpasswd.username, "password": registry_htpasswd.password}
    write_secret(root, path, data)
    assert_pulled(pull(gateway, "broken.test", private_image), private_image)

    events = [line["event"] for line in gateway.log_lines() if line.get("level") == "error"]
    assert "vault_secret_missing" in events and "vault_secret_unusable" in events
    assert_no_secrets(gateway, ["hunter2-typo", registry_htpasswd.password])


def test_namespace_is_sent_with_every_call(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """vault.namespace reads the secret from that OpenBao namespace's own KV mount."""
    namespace = f"team-{uuid.uuid4().hex[:6]}"
    root = openbao.client()
    root.adapter.post(f"/v1/sys/namespaces/{namespace}")
    inside = openbao.client()
    inside.adapter.namespace = namespace
    enable_once(inside, "mounts", "secret", type="kv", options={"version": "2"})
    path = unique_path("namespaced")
    data = {"username": registry_htpasswd.username, "password": registry_htpasswd.password}
    write_secret(inside, path, data)
    upstreams = {"namespaced.test": vault_upstream(registry_htpasswd, path)}
    gateway = start_gateway(
        gateway_config({"url": openbao.url, "namespace": namespace}, upstreams),
        env={"VAULT_TOKEN": "root"},
    )
    assert_pulled(pull(gateway, "namespaced.test", private_image), private_image)
    reads = [
        entry["request"]
        for entry in openbao.audit_entries()
        if entry.get("type") == "request"
        and entry["request"].get("operation") == "read"
        and entry["request"]["path"] == f"secret/data/{path}"
    ]
    assert [read["namespace"]["path"] for read in reads] == [f"{namespace}/"]
