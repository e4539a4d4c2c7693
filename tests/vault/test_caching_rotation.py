"""One Vault read for many cold pulls, and a rotated password working on the very next pull."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.components.client import Response
from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.vault.conftest import GatewayFactory
from tests.vault.openbao_setup import unique_path, write_secret
from tests.vault.pulls import (
    TestImage,
    assert_no_secrets,
    assert_pulled,
    gateway_config,
    metric,
    pull,
    push_image,
    vault_upstream,
)

CONCURRENT_PULLS = 50


def test_concurrent_cold_pulls_read_the_secret_once(
    openbao: OpenBao,
    registry_htpasswd: Registry,
    private_image: TestImage,
    start_gateway: GatewayFactory,
) -> None:
    """50 pulls at once against a cold cache cause exactly one Vault read (audit log count)."""
    path = unique_path("coalesced")
    data = {"username": registry_htpasswd.username, "password": registry_htpasswd.password}
    write_secret(openbao.client(), path, data)
    upstreams = {"busy.test": vault_upstream(registry_htpasswd, path)}
    gateway = start_gateway(
        gateway_config({"url": openbao.url, "cache_ttl": 300}, upstreams),
        env={"VAULT_TOKEN": "root"},
    )
    start = threading.Barrier(CONCURRENT_PULLS)

    def one_pull(_: int) -> Response:
        start.wait()
        return pull(gateway, "busy.test", private_image)

    with ThreadPoolExecutor(CONCURRENT_PULLS) as pool:
        answers = list(pool.map(one_pull, range(CONCURRENT_PULLS)))
    for answer in answers:
        assert_pulled(answer, private_image)
    reads = openbao.count_requests(f"secret/data/{path}", operation="read")
    print(f"\n{CONCURRENT_PULLS} concurrent cold pulls caused {reads} Vault read(s)")
    assert reads == 1
    assert (
        metric(gateway, "registry_gateway_vault_requests_total", operation="read", result="ok") == 1
    )


def test_rotated_password_works_on_the_next_pull(
    openbao: OpenBao, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """A password changed in the registry and in Vault works at once, long before cache_ttl."""
    with Registry.start(tmp_path / "registry", "htpasswd", password="first-password") as registry:
        image = push_image(registry, "rotated/app")
        root = openbao.client()
        path = unique_path("rotated")
        write_secret(root, path, {"username": registry.username, "password": registry.password})
        upstreams = {"rotating.test": vault_upstream(registry, path)}
        gateway = start_gateway(
            gateway_config({"url": openbao.url, "cache_ttl": 3600}, upstreams),
            env={"VAULT_TOKEN": "root"},
        )
        assert_pulled(pull(gateway, "rotating.test", image), image)

        registry.set_password("second-password")
        write_secret(root, path, {"username": registry.username, "password": "second-password"})
        started = time.monotonic()
        assert_pulled(pull(gateway, "rotating.test", image), image)
        assert time.monotonic() - started < 5
        # The refused secret was dropped and read again once; no other read happened.
        assert openbao.count_requests(f"secret/data/{path}", operation="read") == 2
        assert_pulled(pull(gateway, "rotating.test", image), image)
        assert openbao.count_requests(f"secret/data/{path}", operation="read") == 2
    assert_no_secrets(gateway, ["first-password", "second-password"])
