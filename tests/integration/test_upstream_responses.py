"""Upstream answers the gateway relays: blob redirects (follow / pass), 429 and 404 bodies.

The upstream is a loopback app on 127.0.0.1 that redirects blob GETs to a storage app on
127.0.0.2, another origin, as Docker Hub does with its CDN.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.harness import (
    GatewayFactory,
    fetch,
    gateway_config,
    sha256_digest,
    upstream,
)
from tests.integration.loopback import (
    BLOB_DIGEST,
    OTHER_HOST,
    Recorder,
    ServerFactory,
    authority,
    base_url,
    body_bytes,
)

BLOB = body_bytes(300_000)
USER, PASSWORD = "robot", "upstream-password"
STATIC_TOKEN = "upstream-static-token"
CREDENTIALS: dict[str, dict[str, str]] = {
    "static-token": {"token": STATIC_TOKEN},
    "basic": {"username": USER, "password": PASSWORD},
}
ACCEPTED = {
    f"Bearer {STATIC_TOKEN}",
    "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
}


async def storage_app(aiohttp_server: ServerFactory) -> tuple[Recorder, TestServer]:
    """The redirect target on 127.0.0.2: serves the blob to anyone, records headers."""
    recorder = Recorder()

    async def data(request: web.Request) -> web.Response:
        return web.Response(body=BLOB, headers={"Content-Type": "application/octet-stream"})

    app = recorder.app()
    app.router.add_get("/storage/{digest}", data)
    return recorder, await aiohttp_server(app, host=OTHER_HOST)


async def redirecting_registry(
    aiohttp_server: ServerFactory, storage: TestServer
) -> tuple[Recorder, TestServer]:
    """Blob GET with accepted credentials → 307 to the storage app; without → Basic challenge."""
    recorder = Recorder()

    async def blob(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") not in ACCEPTED:
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="loopback"'},
            )
        location = f"{base_url(storage)}/storage/{request.match_info['digest']}?signature=abc"
        return web.Response(
            status=307,
            headers={"Location": location, "Docker-Content-Digest": request.match_info["digest"]},
        )

    app = recorder.app()
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob)
    return recorder, await aiohttp_server(app)


def redirect_config(registry: TestServer, redirects: str, credentials: dict[str, str]) -> Any:
    key = authority(registry)
    return gateway_config(
        {key: upstream(base_url(registry), redirects=redirects, credentials=credentials)},
        default=key,
        # The loopback blob is not content-addressed: relay it uncached (the cache would abort).
        cache={"enabled": False},
    )


@pytest.mark.parametrize("credentials", list(CREDENTIALS))
async def test_followed_redirect_delivers_the_body_without_credentials_to_the_other_host(
    credentials: str,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """`redirects: follow`: the caller gets the blob; the other host never sees Authorization."""
    storage, storage_server = await storage_app(aiohttp_server)
    registry, registry_server = await redirecting_registry(aiohttp_server, storage_server)
    gateway = start_gateway(redirect_config(registry_server, "follow", CREDENTIALS[credentials]))

    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/team/app/blobs/{BLOB_DIGEST}",
        headers={"Authorization": "Bearer caller-token"},
    )

    assert answer.status == 200
    assert answer.body == BLOB
    assert sha256_digest(answer.body) == sha256_digest(BLOB)
    assert registry.authorizations()[-1] in ACCEPTED
    assert len(storage.requests) == 1
    assert storage.requests[0].query.get("signature") == "abc"
    assert "Authorization" not in storage.requests[0].headers
    assert "Cookie" not in storage.requests[0].headers


async def test_passed_redirect_is_relayed_with_its_location(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """`redirects: pass`: the caller gets the 307 and an absolute Location; nobody fetches it."""
    storage, storage_server = await storage_app(aiohttp_server)
    _registry, registry_server = await redirecting_registry(aiohttp_server, storage_server)
    gateway = start_gateway(redirect_config(registry_server, "pass", CREDENTIALS["static-token"]))

    answer = await fetch(http, "GET", f"{gateway.url}/v2/team/app/blobs/{BLOB_DIGEST}")

    assert answer.status == 307
    assert answer.headers["Location"] == (
        f"{base_url(storage_server)}/storage/{BLOB_DIGEST}?signature=abc"
    )
    assert answer.headers["Docker-Content-Digest"] == BLOB_DIGEST
    assert "Authorization" not in answer.headers
    assert storage.requests == []


async def fixed_answer_app(
    aiohttp_server: ServerFactory, status: int, body: bytes, headers: dict[str, str]
) -> TestServer:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/v2/{tail:.*}", answer)
    return await aiohttp_server(app)


async def test_429_with_retry_after_and_json_body_is_relayed_as_is(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """An upstream 429 keeps its status, Retry-After and JSON body (Docker Hub's rate limit)."""
    body = json.dumps(
        {"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit.",
                     "detail": {"window": "6h"}}]}
    ).encode()  # fmt: skip
    server = await fixed_answer_app(
        aiohttp_server,
        429,
        body,
        {
            "Retry-After": "17",
            "Content-Type": "application/json",
            "RateLimit-Remaining": "0;w=21600",
        },
    )
    key = authority(server)
    gateway = start_gateway(gateway_config({key: upstream(base_url(server))}, default=key))

    answer = await fetch(http, "GET", f"{gateway.url}/v2/library/alpine/manifests/3")

    assert answer.status == 429
    assert answer.headers["Retry-After"] == "17"
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.body == body


async def test_upstream_404_body_is_relayed(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """An upstream 404 reaches the caller with its own body, unchanged."""
    body = b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known","detail":1}]}'
    server = await fixed_answer_app(
        aiohttp_server, 404, body, {"Content-Type": "application/json; charset=utf-8"}
    )
    key = authority(server)
    gateway = start_gateway(gateway_config({key: upstream(base_url(server))}, default=key))

    answer = await fetch(http, "GET", f"{gateway.url}/v2/team/missing/tags/list")

    assert answer.status == 404
    assert answer.body == body
