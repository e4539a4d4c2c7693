"""Replicas sharing one S3 bucket (real SeaweedFS): what one fills, the others serve."""

from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp

from tests.components import client
from tests.components.redis import Redis
from tests.components.registry import Registry
from tests.components.seaweedfs import SeaweedFS
from tests.scaleout.conftest import metric, replica_config, upstream_gets

ACCEPT = {"Accept": client.MANIFEST_ACCEPT}


async def pull(session: aiohttp.ClientSession, base: str, repo: str, tag: str) -> list[str]:
    """Manifest then every blob, each sha256 checked; returns the X-Cache of the blobs."""
    async with session.get(f"{base}/v2/{repo}/manifests/{tag}", headers=ACCEPT) as response:
        assert response.status == 200
        manifest = await response.json(content_type=None)
    results = []
    for digest in [manifest["config"]["digest"], *(x["digest"] for x in manifest["layers"])]:
        async with session.get(f"{base}/v2/{repo}/blobs/{digest}") as response:
            assert response.status == 200
            body = await response.read()
        assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
        results.append(response.headers["X-Cache"])
    return results


async def test_second_replica_serves_from_the_bucket_without_upstream_blob_gets(
    seaweedfs: SeaweedFS, upstream: Registry, redis: Redis, replicas, prefix: str
) -> None:
    """A cold pull through replica A, then through B: B asks the upstream for no blob."""
    image = client.push_oci_image(
        upstream, "team/app", "v1", config=b'{"a":1}', layer=os.urandom(12 << 20)
    )
    a, b = replicas(2, replica_config(upstream, seaweedfs, prefix, redis))
    async with aiohttp.ClientSession() as session:
        assert await pull(session, a.url, "team/app", "v1") == ["MISS", "MISS"]
        assert await pull(session, b.url, "team/app", "v1") == ["HIT", "HIT"]
        async with session.get(f"{b.url}/metrics") as response:
            b_metrics = await response.text()
    assert upstream_gets(upstream, image.layer_digest) == 1
    assert upstream_gets(upstream, image.config_digest) == 1
    assert metric(b_metrics, "registry_gateway_upstream_requests_total", route="blob") == 0
    stored = seaweedfs.keys(prefix=prefix)
    layer_keys = [k for k in stored if "/blobs/" in k and k.endswith(image.layer_digest[7:])]
    assert len(layer_keys) == 1 and stored[layer_keys[0]] == 12 << 20
    assert seaweedfs.uploads_in_progress() == 0


def manifest_requests(registry: Registry, reference: str) -> list[str]:
    """The methods of the upstream's manifest requests for ``reference``, in order."""
    methods = []
    for line in registry.log_path.read_text(errors="replace").splitlines():
        for method in ("GET", "HEAD"):  # the registry's access-log lines
            if f'"{method} /v2/team/tags/manifests/{reference} HTTP' in line:
                methods.append(method)
    return methods


async def test_a_tag_is_revalidated_once_per_tag_ttl_for_the_whole_cluster(
    seaweedfs: SeaweedFS, upstream: Registry, redis: Redis, replicas, prefix: str
) -> None:
    """Three replicas pull one tag: one upstream GET at first; after tag_ttl, pulls through
    all three at once cost one upstream HEAD in total."""
    client.push_oci_image(upstream, "team/tags", "v1", config=b'{"t":1}', layer=b"layer")
    config = replica_config(upstream, seaweedfs, prefix, redis)
    config["cache"] = {**config["cache"], "tag_ttl": 3}
    group = replicas(3, config)
    url = "{}/v2/team/tags/manifests/v1"
    async with aiohttp.ClientSession() as session:

        async def get(base: str) -> str:
            async with session.get(url.format(base), headers=ACCEPT) as response:
                assert response.status == 200
                await response.read()
                return response.headers["X-Cache"]

        assert [await get(g.url) for g in group] == ["MISS", "HIT", "HIT"]
        assert manifest_requests(upstream, "v1") == ["GET"]
        await asyncio.sleep(3.5)
        assert set(await asyncio.gather(*(get(g.url) for g in group))) == {"HIT"}
    assert manifest_requests(upstream, "v1") == ["GET", "HEAD"]
