"""The cache with real clients: a second pull by skopeo or containerd never reaches the upstream.

Upstream requests are counted in the real registry's access log (only lines with the gateway's
User-Agent); the gateway's own log lines say which answers came from the cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from tests.components import images, skopeo
from tests.components.containerd import Containerd, write_hosts_toml
from tests.components.registry import Registry
from tests.integration.harness import (
    GatewayFactory,
    gateway_config,
    gateway_requests,
    logged,
    registry_access_lines,
    upstream,
)

REGISTRY_NAME = "registry.test"
UNREACHABLE = "127.0.0.1:1"


def upstream_gets(registry: Registry, repo: str) -> list[str]:
    """The registry's access-log lines for manifest and blob GETs the gateway sent for `repo`."""
    return [
        line
        for line in registry_access_lines(registry, f"/v2/{repo}/")
        if '"GET ' in line and ("/manifests/" in line or "/blobs/" in line)
    ]


def upstream_requests(registry: Registry, repo: str) -> list[str]:
    """Every access-log line of a request the gateway sent for `repo` (any method)."""
    return registry_access_lines(registry, f"/v2/{repo}/")


def tree_bytes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_second_skopeo_pull_is_served_from_the_cache(
    registry_open: Registry, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """skopeo copies an image twice: the second copy sends no GET upstream, same bytes."""
    layout = images.build_image(
        tmp_path / "build",
        "cache-skopeo",
        files={"/data/blob.bin": os.urandom(300_000), "/etc/c.txt": b"cached\n"},
        layer_count=2,
    )
    image = images.push(layout, registry_open, "cache/skopeo", "v1")
    gateway = start_gateway(
        gateway_config(
            {
                REGISTRY_NAME: upstream(registry_open.url),
                UNREACHABLE: upstream(f"http://{UNREACHABLE}"),
            },
            default=UNREACHABLE,
        )
    )
    source = f"docker://{gateway.host}/{REGISTRY_NAME}/{image.repo}:{image.tag}"

    skopeo.copy_to_oci(source, tmp_path / "first")
    after_first = len(upstream_gets(registry_open, image.repo))
    requests_first = len(upstream_requests(registry_open, image.repo))
    skopeo.copy_to_oci(source, tmp_path / "second")

    assert after_first >= 1 + len(image.blob_digests)
    assert upstream_gets(registry_open, image.repo)[after_first:] == []
    assert upstream_requests(registry_open, image.repo)[requests_first:] == []
    assert tree_bytes(tmp_path / "first") == tree_bytes(tmp_path / "second")
    blob_paths = {f"/v2/{REGISTRY_NAME}/{image.repo}/blobs/{d}" for d in image.blob_digests}

    def second_pull_hits(lines: list[dict[str, Any]]) -> bool:
        hits = {r["path"] for r in gateway_requests(lines) if r.get("cache") == "hit"}
        return blob_paths <= hits

    logged(gateway, second_pull_hits)


def test_second_containerd_pull_is_served_from_the_cache(
    registry_open: Registry,
    containerd: Containerd,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """ctr pulls, forgets the image (content GC'd) and pulls again: no upstream GET the 2nd time."""
    layout = images.build_image(
        tmp_path / "build", "cache-ctr", files={"/etc/ctr-cache.txt": os.urandom(50_000)}
    )
    image = images.push(layout, registry_open, "cache/ctr", "v1")
    config = gateway_config({registry_open.host: upstream(registry_open.url)}, default=None)
    gateway = start_gateway(config)
    write_hosts_toml(tmp_path, registry_open.host, gateway.url, server=f"http://{UNREACHABLE}")
    ref = f"{registry_open.host}/{image.repo}:{image.tag}"

    containerd.pull(ref, hosts_dir=tmp_path)
    after_first = len(upstream_gets(registry_open, image.repo))
    requests_first = len(upstream_requests(registry_open, image.repo))
    containerd.remove_image(ref)
    containerd.pull(ref, hosts_dir=tmp_path)

    assert after_first >= 1 + len(image.blob_digests)
    assert upstream_gets(registry_open, image.repo)[after_first:] == []
    # containerd resolves the tag with a HEAD before it GETs the manifest by digest, so the
    # first pull never told the cache which digest the tag names: one HEAD (free on Docker
    # Hub) asks; everything else is local.
    assert upstream_requests(registry_open, image.repo)[requests_first:] == [
        line
        for line in upstream_requests(registry_open, image.repo)[requests_first:]
        if f'"HEAD /v2/{image.repo}/manifests/{image.tag} ' in line
    ]
    assert len(upstream_requests(registry_open, image.repo)[requests_first:]) <= 1
    assert containerd.image_digest(ref) == image.manifest_digest
    assert containerd.check_image(ref).complete
    blob_paths = {f"/v2/{image.repo}/blobs/{d}" for d in image.blob_digests}

    def blobs_hit(lines: list[dict[str, Any]]) -> bool:
        hits = {r["path"] for r in gateway_requests(lines) if r.get("cache") == "hit"}
        return blob_paths <= hits

    logged(gateway, blobs_hit)
    containerd.remove_image(ref)
