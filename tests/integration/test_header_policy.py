"""What the gateway sends upstream and how it maps upstream paths back: Accept, n/last, Link.

A loopback registry app records every request, because distribution 2.8 can show neither
which Accept lines arrived nor a paginated tags/list (it ignores `n` and `last`).
"""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from yarl import URL

from tests.integration.harness import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    GatewayFactory,
    fetch,
    gateway_config,
    upstream,
)
from tests.integration.loopback import Recorder, ServerFactory, authority, base_url

TAGS = ["a", "b", "c", "d", "e"]
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode()


def registry_app(recorder: Recorder, *, absolute_links: bool = False) -> web.Application:
    """Manifests for any name, and tags/list paginated as distribution v3 does it."""

    async def manifest(request: web.Request) -> web.Response:
        return web.Response(body=MANIFEST, headers={"Content-Type": OCI_MANIFEST})

    async def tags(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        last = request.query.get("last")
        remaining = [t for t in TAGS if last is None or t > last]
        n = int(request.query.get("n", len(TAGS)))
        page = remaining[:n]
        headers = {}
        if n and len(remaining) > n:
            link = URL.build(path=f"/v2/{name}/tags/list", query={"last": page[-1], "n": str(n)})
            if absolute_links:
                link = URL(f"http://{request.host}").join(link)
            headers["Link"] = f'<{link}>; rel="next"'
        return web.json_response({"name": name, "tags": page}, headers=headers)

    app = recorder.app()
    app.router.add_get("/v2/{name:.+}/manifests/{reference}", manifest)
    app.router.add_get("/v2/{name:.+}/tags/list", tags)
    return app


@pytest.fixture
async def recorder_server(aiohttp_server: ServerFactory) -> tuple[Recorder, TestServer]:
    recorder = Recorder()
    return recorder, await aiohttp_server(registry_app(recorder))


async def test_every_accept_line_reaches_upstream_in_order(
    recorder_server: tuple[Recorder, TestServer],
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """Three Accept lines (one with two types and a parameter) arrive upstream as sent."""
    recorder, server = recorder_server
    key = authority(server)
    gateway = start_gateway(gateway_config({key: upstream(base_url(server))}, default=key))
    lines = [DOCKER_MANIFEST, f"{OCI_INDEX}; q=0.9", f"{OCI_MANIFEST}, {DOCKER_LIST}"]
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        headers.add("Accept", line)

    answer = await fetch(http, "GET", f"{gateway.url}/v2/team/app/manifests/v1", headers=headers)

    assert answer.status == 200
    assert recorder.requests[-1].headers.getall("Accept") == lines


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
async def test_caller_without_manifest_types_gets_the_four_defaults_upstream(
    accept: str | None,
    recorder_server: tuple[Recorder, TestServer],
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """No Accept (or none naming a manifest type) makes the gateway send all four manifest types."""
    recorder, server = recorder_server
    key = authority(server)
    gateway = start_gateway(gateway_config({key: upstream(base_url(server))}, default=key))

    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/team/app/manifests/v1",
        headers={} if accept is None else {"Accept": accept},
        skip_auto_headers=["Accept"],
    )

    assert answer.status == 200
    sent = recorder.requests[-1].headers.getall("Accept")
    types = {part.split(";")[0].strip() for line in sent for part in line.split(",")}
    assert set(MANIFEST_TYPES) <= types
    if accept is not None:
        assert accept in sent


def link_target(link: str) -> URL:
    assert link.startswith("<") and '>; rel="next"' in link, link
    return URL(link[1 : link.index(">")])


@pytest.mark.parametrize("absolute_links", [False, True], ids=["relative", "absolute"])
@pytest.mark.parametrize("form", ["default", "prefix", "ns"])
async def test_tags_pagination_forwards_n_last_and_rewrites_link(
    form: str,
    absolute_links: bool,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """n/last go upstream; the upstream Link comes back in the caller's own path form, ns kept."""
    recorder = Recorder()
    server = await aiohttp_server(registry_app(recorder, absolute_links=absolute_links))
    key = authority(server)
    gateway = start_gateway(gateway_config({key: upstream(base_url(server))}, default=key))
    caller_name = f"{key}/team/app" if form == "prefix" else "team/app"
    query = {"n": "2", **({"ns": key} if form == "ns" else {})}

    first = await fetch(http, "GET", f"{gateway.url}/v2/{caller_name}/tags/list", params=query)

    assert first.status == 200
    assert first.json()["tags"] == ["a", "b"]
    assert recorder.requests[-1].path == "/v2/team/app/tags/list"
    assert recorder.requests[-1].query.get("n") == "2"
    target = link_target(first.headers["Link"])
    assert not target.is_absolute() or target.origin() == URL(gateway.url).origin()
    assert target.path == f"/v2/{caller_name}/tags/list"
    assert dict(target.query) == {"last": "b", **query}

    pages = [first.json()["tags"]]
    while (
        "Link" in (answer := await fetch(http, "GET", str(URL(gateway.url).join(target)))).headers
    ):
        pages.append(answer.json()["tags"])
        target = link_target(answer.headers["Link"])
    pages.append(answer.json()["tags"])

    assert pages == [["a", "b"], ["c", "d"], ["e"]]
    assert [r.query.get("last") for r in recorder.requests] == [None, "b", "d"]


async def test_docker_hub_link_drops_the_library_prefix_it_added(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """For `/v2/alpine/tags/list` the upstream sees library/alpine; the Link says /v2/alpine/."""
    recorder = Recorder()
    server = await aiohttp_server(registry_app(recorder))
    gateway = start_gateway(
        gateway_config({"docker.io": upstream(base_url(server))}, default="docker.io")
    )

    answer = await fetch(http, "GET", f"{gateway.url}/v2/alpine/tags/list", params={"n": "3"})

    assert answer.status == 200
    assert recorder.requests[-1].path == "/v2/library/alpine/tags/list"
    target = link_target(answer.headers["Link"])
    assert target.path == "/v2/alpine/tags/list"
    assert dict(target.query) == {"last": "c", "n": "3"}
