"""S3 keys and the Redis password read from a real OpenBao, not the environment."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import aiohttp

from tests.components.images import push_blob
from tests.components.openbao import OpenBao
from tests.components.redis import Redis
from tests.components.registry import Registry
from tests.components.seaweedfs import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFS
from tests.gateway_process import GatewayProcess
from tests.scaleout.conftest import metric, upstream_gets
from tests.vault.openbao_setup import unique_path, write_secret


async def test_s3_keys_and_redis_password_from_vault_fill_and_coordinate(
    seaweedfs: SeaweedFS, upstream: Registry, openbao: OpenBao, tmp_path: Path, prefix: str
) -> None:
    """With cache.s3.credentials.vault and cluster.redis.vault (no keys in the environment),
    two replicas fill the bucket once and coordinate through a password-protected Redis."""
    s3_path, redis_path = unique_path("s3"), unique_path("redis")
    write_secret(
        openbao.client(), s3_path, {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}
    )
    write_secret(openbao.client(), redis_path, {"password": "redis-from-vault"})
    digest = push_blob(upstream, "team/vault", os.urandom(5 << 20))
    with Redis.start(tmp_path / "redis", password="redis-from-vault") as redis:
        config = {
            "upstreams": {"up": {"url": upstream.url}},
            "routing": {"default": "up"},
            "vault": {"url": openbao.url, "auth": {"method": "token"}},
            "cache": {
                "store": "s3",
                "s3": {
                    "endpoint": seaweedfs.endpoint,
                    "bucket": BUCKET,
                    "prefix": prefix,
                    "credentials": {"vault": {"path": s3_path}},
                },
            },
            "cluster": {"redis": {"url": redis.url, "vault": {"path": redis_path}}},
        }
        env = {"VAULT_TOKEN": openbao.root_token}
        gateways = [GatewayProcess.start(tmp_path / f"g{i}", config, env=env) for i in range(2)]
        try:
            async with aiohttp.ClientSession() as session:
                for gateway in gateways:
                    url = f"{gateway.url}/v2/team/vault/blobs/{digest}"
                    async with session.get(url) as response:
                        assert response.status == 200
                        body = await response.read()
                    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
                async with session.get(f"{gateways[1].url}/metrics") as response:
                    text = await response.text()
        finally:
            for gateway in gateways:
                gateway.stop()
    assert upstream_gets(upstream, digest) == 1
    assert metric(text, "registry_gateway_cluster_up") == 1
    assert metric(text, "registry_gateway_cluster_errors_total") == 0
    assert any("/blobs/" in key for key in seaweedfs.keys(prefix=prefix))
    assert SECRET_KEY not in "".join(g.log_text() for g in gateways)
