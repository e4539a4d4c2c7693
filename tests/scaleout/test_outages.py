"""Redis or S3 going away under running replicas: pulls go on, nothing answers 5xx."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import aiohttp

from tests.components import client, skopeo
from tests.components.images import push_blob
from tests.components.redis import Redis
from tests.components.registry import Registry
from tests.components.seaweedfs import SeaweedFS
from tests.scaleout.conftest import metric, replica_config, upstream_gets


async def get_blob(session: aiohttp.ClientSession, base: str, repo: str, digest: str) -> str:
    """GET one blob; asserts 200 and the sha256; returns X-Cache."""
    async with session.get(f"{base}/v2/{repo}/blobs/{digest}") as response:
        assert response.status == 200, await response.text()
        body = await response.read()
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    return response.headers.get("X-Cache", "")


async def test_redis_stopped_during_pulls_means_no_5xx_and_back_means_one_get_again(
    seaweedfs: SeaweedFS, upstream: Registry, redis: Redis, replicas, prefix: str
) -> None:
    """Redis down: concurrent cold pulls through two replicas still answer 200 with the right
    bytes (each alone, cluster_up 0, a log line); Redis back: one upstream GET per digest."""
    repo = "team/outage"
    down, warm, back = (push_blob(upstream, repo, os.urandom(6 << 20)) for _ in range(3))
    a, b = replicas(2, replica_config(upstream, seaweedfs, prefix, redis))
    async with aiohttp.ClientSession() as session:
        redis.stop()
        await asyncio.gather(*(get_blob(session, g.url, repo, down) for g in (a, b, a, b)))
        async with session.get(f"{a.url}/metrics") as response:
            text = await response.text()
        assert metric(text, "registry_gateway_cluster_up") == 0
        assert metric(text, "registry_gateway_cluster_errors_total") >= 1
        assert "cluster_unavailable" in a.log_text()

        redis.start_again()
        for gateway in (a, b):  # the first call after the restart may meet a dead connection
            await get_blob(session, gateway.url, repo, warm)
        await asyncio.gather(*(get_blob(session, g.url, repo, back) for g in (a, b, a, b)))
        async with session.get(f"{b.url}/metrics") as response:
            text = await response.text()
    assert upstream_gets(upstream, back) == 1
    assert metric(text, "registry_gateway_cluster_up") == 1
    assert "cluster_recovered" in a.log_text() + b.log_text()


async def test_s3_stopped_pulls_stream_from_upstream_and_readyz_names_the_store(
    upstream: Registry, replicas, prefix: str, tmp_path: Path
) -> None:
    """SeaweedFS stopped: blob pulls answer 200 from the upstream, /readyz stays 200 and names
    the S3 store as degraded; SeaweedFS back: the cache fills and hits again."""
    s3 = SeaweedFS.start(tmp_path / "seaweedfs-own")
    try:
        repo = "team/s3down"
        first, second = (push_blob(upstream, repo, os.urandom(3 << 20)) for _ in range(2))
        (gateway,) = replicas(1, replica_config(upstream, s3, prefix))
        async with aiohttp.ClientSession() as session:
            s3.stop()
            for _ in range(2):
                assert await get_blob(session, gateway.url, repo, first) == "MISS"
            async with session.get(f"{gateway.url}/readyz") as response:
                assert response.status == 200
                report = await response.json()
            assert "s3" in report["checks"]["cache"] and "degraded" in report["checks"]["cache"]
            s3.restart()
            await asyncio.sleep(6)  # the store's problem is held 5 s, then retried
            assert await get_blob(session, gateway.url, repo, second) == "MISS"
            assert await get_blob(session, gateway.url, repo, second) == "HIT"
            async with session.get(f"{gateway.url}/readyz") as response:
                assert response.status == 200
        assert upstream_gets(upstream, first) == 2
        assert upstream_gets(upstream, second) == 1
    finally:
        s3.stop()


async def test_redirect_hits_cost_the_gateway_no_body_bytes_and_skopeo_follows(
    seaweedfs: SeaweedFS, upstream: Registry, replicas, prefix: str, tmp_path: Path
) -> None:
    """redirect: true: a 96 MiB hit is a 307 to a presigned URL (the gateway sends < 64 KiB of
    body bytes for it, the bytes still hash right), and skopeo copies an image through 307s."""
    image = client.push_oci_image(
        upstream, "team/redir", "v1", config=b'{"r":1}', layer=os.urandom(96 << 20)
    )
    config = replica_config(upstream, seaweedfs, prefix, s3_extra={"redirect": True})
    (gateway,) = replicas(1, config)
    blob_url = f"{gateway.url}/v2/team/redir/blobs/{image.layer_digest}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
        assert await get_blob(session, gateway.url, "team/redir", image.layer_digest) == "MISS"
        async with session.get(f"{gateway.url}/metrics") as response:
            before = metric(await response.text(), "registry_gateway_bytes_sent_total")
        async with session.get(blob_url, allow_redirects=False) as response:
            assert response.status == 307
            assert response.headers["Docker-Content-Digest"] == image.layer_digest
            location = response.headers["Location"]
        assert location.startswith(seaweedfs.endpoint)
        assert await get_blob(session, gateway.url, "team/redir", image.layer_digest) in (
            "",  # the final answer is SeaweedFS's own, without X-Cache
            "HIT",
        )
        async with session.get(f"{gateway.url}/metrics") as response:
            after = metric(await response.text(), "registry_gateway_bytes_sent_total")
    assert after - before < 64 * 1024

    def redirects() -> int:
        return sum(1 for line in gateway.log_lines() if line.get("status") == 307)

    before_skopeo = redirects()
    for attempt in ("cold", "warm"):
        skopeo.copy(f"docker://{gateway.host}/team/redir:v1", f"dir:{tmp_path / attempt}")
    # the layer in both copies, the config (filled by the cold copy) in the warm one
    assert redirects() - before_skopeo == 3
    layer = tmp_path / "warm" / image.layer_digest[7:]
    assert hashlib.sha256(layer.read_bytes()).hexdigest() == image.layer_digest[7:]
