"""Tags in the cache: reused for tag_ttl, revalidated with one HEAD after it, served stale when
the upstream is down or refusing (429/503), Accept-aware, 404s remembered for negative_ttl.

Upstream requests are counted in the real registry's access log; the 429/503 upstream is a
loopback app because a real registry does not answer those on demand.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.components.registry import Registry
from tests.integration.harness import (
    ALL_MANIFESTS_ACCEPT,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    GatewayFactory,
    fetch,
    gateway_config,
    push_marker_image,
    registry_access_lines,
    registry_gateway_config,
    sample,
    scrape,
    upstream,
)
from tests.integration.loopback import ServerFactory, authority, base_url

TTL = 1.0
ACCEPT = {"Accept": ALL_MANIFESTS_ACCEPT}


def manifest_lines(registry: Registry, repo: str, method: str) -> list[str]:
    return [
        line
        for line in registry_access_lines(registry, f"/v2/{repo}/manifests/")
        if f'"{method} ' in line
    ]


async def test_tag_is_reused_within_tag_ttl_then_revalidated_with_one_head(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Within tag_ttl no upstream request; after it exactly one HEAD and no GET (unchanged)."""
    image = push_marker_image(registry_open, "cache/tags", "v1", "ttl")
    gateway = start_gateway({**registry_gateway_config(registry_open), "cache": {"tag_ttl": TTL}})
    url = f"{gateway.url}/v2/{image.repo}/manifests/{image.tag}"

    first = await fetch(http, "GET", url, headers=ACCEPT)
    gets, heads = (len(manifest_lines(registry_open, image.repo, m)) for m in ("GET", "HEAD"))
    second = await fetch(http, "GET", url, headers=ACCEPT)
    head = await fetch(http, "HEAD", url, headers=ACCEPT)
    assert (head.status, head.headers["X-Cache"], head.body) == (200, "HIT", b"")
    assert head.headers["Content-Length"] == str(len(image.manifest))
    assert head.headers["Docker-Content-Digest"] == image.manifest_digest
    assert (len(manifest_lines(registry_open, image.repo, "GET")), len(
        manifest_lines(registry_open, image.repo, "HEAD"))) == (gets, heads)  # fmt: skip
    await asyncio.sleep(TTL + 0.2)
    third = await fetch(http, "GET", url, headers=ACCEPT)

    assert first.headers["X-Cache"] == "MISS" and second.headers["X-Cache"] == "HIT"
    assert third.headers["X-Cache"] == "HIT"
    assert first.body == second.body == third.body == image.manifest
    assert third.headers["Docker-Content-Digest"] == image.manifest_digest
    assert len(manifest_lines(registry_open, image.repo, "HEAD")) == heads + 1
    assert len(manifest_lines(registry_open, image.repo, "GET")) == gets
    metrics = await scrape(http, gateway.url)
    assert sample(metrics, "registry_gateway_cache_requests_total", result="revalidated") == 1


async def test_moved_tag_is_fetched_after_revalidation(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A tag pushed anew upstream is seen after tag_ttl: the HEAD shows a new digest."""
    old = push_marker_image(registry_open, "cache/moving", "v1", "old")
    gateway = start_gateway({**registry_gateway_config(registry_open), "cache": {"tag_ttl": TTL}})
    url = f"{gateway.url}/v2/{old.repo}/manifests/{old.tag}"
    assert (await fetch(http, "GET", url, headers=ACCEPT)).body == old.manifest

    new = push_marker_image(registry_open, "cache/moving", "v1", "new")
    assert (await fetch(http, "GET", url, headers=ACCEPT)).body == old.manifest  # within ttl
    await asyncio.sleep(TTL + 0.2)
    answer = await fetch(http, "GET", url, headers=ACCEPT)

    assert answer.body == new.manifest
    assert answer.headers["Docker-Content-Digest"] == new.manifest_digest


async def test_stopped_upstream_serves_the_cached_tag_stale(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The upstream registry stopped: after tag_ttl the cached tag is served, X-Cache: STALE."""
    with Registry.start(tmp_path / "registry") as registry:
        image = push_marker_image(registry, "cache/stale", "v1", "stale")
        gateway = start_gateway(
            {**registry_gateway_config(registry), "cache": {"tag_ttl": TTL},
             "timeouts": {"connect": 2, "read": 5}}
        )  # fmt: skip
        url = f"{gateway.url}/v2/{image.repo}/manifests/{image.tag}"
        assert (await fetch(http, "GET", url, headers=ACCEPT)).status == 200
    await asyncio.sleep(TTL + 0.2)

    stale = await fetch(http, "GET", url, headers=ACCEPT)

    assert stale.status == 200
    assert stale.headers["X-Cache"] == "STALE"
    assert stale.body == image.manifest
    metrics = await scrape(http, gateway.url)
    assert sample(metrics, "registry_gateway_cache_requests_total", result="stale") == 1


@pytest.mark.parametrize("refusal", [429, 503])
async def test_refusing_upstream_serves_the_cached_tag_stale(
    refusal: int,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """An upstream answering 429 or 503 after tag_ttl: the cached tag is served as STALE."""
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "marker": refusal}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    answers: list[int] = []

    async def manifest(request: web.Request) -> web.Response:
        if answers:
            answers.append(refusal)
            return web.Response(status=refusal, headers={"Retry-After": "30"})
        answers.append(200)
        return web.Response(
            body=body, headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest}
        )

    app = web.Application()
    app.router.add_route("*", "/v2/{name:.+}/manifests/{reference}", manifest)
    server = await aiohttp_server(app)
    key = authority(server)
    gateway = start_gateway(
        gateway_config({key: upstream(base_url(server))}, default=key, cache={"tag_ttl": TTL})
    )
    url = f"{gateway.url}/v2/team/app/manifests/latest"
    assert (await fetch(http, "GET", url, headers=ACCEPT)).headers["X-Cache"] == "MISS"
    await asyncio.sleep(TTL + 0.2)

    stale = await fetch(http, "GET", url, headers=ACCEPT)

    assert (stale.status, stale.headers["X-Cache"], stale.body) == (200, "STALE", body)
    assert answers == [200, refusal]


async def test_cached_manifest_is_never_served_for_a_media_type_not_accepted(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A cached OCI manifest does not answer a caller that accepts only Docker's type."""
    image = push_marker_image(registry_open, "cache/accept", "v1", "accept")
    gateway = start_gateway(registry_gateway_config(registry_open))
    tag_url = f"{gateway.url}/v2/{image.repo}/manifests/{image.tag}"
    digest_url = f"{gateway.url}/v2/{image.repo}/manifests/{image.manifest_digest}"
    assert (await fetch(http, "GET", tag_url, headers=ACCEPT)).status == 200
    assert (await fetch(http, "GET", digest_url, headers=ACCEPT)).headers["X-Cache"] == "HIT"

    for url in (tag_url, digest_url):
        answer = await fetch(http, "GET", url, headers={"Accept": DOCKER_MANIFEST})
        assert answer.headers.get("X-Cache") != "HIT"
        if answer.status == 200:
            assert answer.headers["Content-Type"] == DOCKER_MANIFEST


async def test_missing_tag_is_remembered_for_negative_ttl(
    registry_open: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """A 404 for a tag is answered from memory within negative_ttl, without asking upstream."""
    gateway = start_gateway({**registry_gateway_config(registry_open),
                             "cache": {"negative_ttl": 30}})  # fmt: skip
    url = f"{gateway.url}/v2/cache/none/manifests/absent"

    first = await fetch(http, "GET", url, headers=ACCEPT)
    asked = len(registry_access_lines(registry_open, "/v2/cache/none/manifests/absent"))
    second = await fetch(http, "GET", url, headers=ACCEPT)

    assert (first.status, second.status) == (404, 404)
    assert second.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert second.headers["X-Cache"] == "HIT"
    assert asked >= 1
    assert len(registry_access_lines(registry_open, "/v2/cache/none/manifests/absent")) == asked
