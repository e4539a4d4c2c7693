"""`{tenant}` in a Vault path: each authenticated caller's pulls use its tenant's secret."""

from __future__ import annotations

from pathlib import Path

from tests.components import client
from tests.components.openbao import OpenBao
from tests.components.registry import Registry, htpasswd_line
from tests.vault.conftest import GatewayFactory
from tests.vault.openbao_setup import unique_path, write_secret
from tests.vault.pulls import (
    OCI_MANIFEST,
    TestImage,
    assert_no_secrets,
    assert_pulled,
    gateway_config,
    vault_upstream,
)


def test_each_tenant_pulls_with_its_own_secret(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """alice (team-a) gets team-a's working secret; bob (team-b) gets team-b's stale one."""
    base = unique_path("tenants")
    root = openbao.client()
    write_secret(
        root,
        f"{base}/team-a",
        {"username": registry_htpasswd.username, "password": registry_htpasswd.password},
    )
    write_secret(
        root,
        f"{base}/team-b",
        {"username": registry_htpasswd.username, "password": "team-b-outdated-password"},
    )
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_line("alice", "alice-pw") + htpasswd_line("bob", "bob-pw"))
    config = gateway_config(
        {"url": openbao.url},
        {"tenanted.test": vault_upstream(registry_htpasswd, base + "/{tenant}")},
    )
    config["clients"] = {
        "auth": "basic",
        "htpasswd": str(htpasswd),
        "tenants": {"team-a": ["alice"], "team-b": ["bob"]},
    }
    gateway = start_gateway(config, env={"VAULT_TOKEN": "root"})
    url = f"{gateway.url}/v2/tenanted.test/{private_image.repo}/manifests/{private_image.tag}"

    def pull_as(user: str, password: str) -> client.Response:
        auth = client.basic_authorization(user, password)
        return client.send(url, auth=auth, headers={"Accept": OCI_MANIFEST})

    assert_pulled(pull_as("alice", "alice-pw"), private_image)
    refused = pull_as("bob", "bob-pw")
    assert refused.status != 200
    assert openbao.count_requests(f"secret/data/{base}/team-a", operation="read") == 1
    # bob's refused secret was read, dropped and read once more (the rotation retry).
    assert openbao.count_requests(f"secret/data/{base}/team-b", operation="read") == 2
    assert_no_secrets(gateway, [registry_htpasswd.password, "team-b-outdated-password"])
