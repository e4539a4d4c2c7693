"""Per-caller rate limits shared through Redis, and the per-upstream concurrency cap."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.components.client import basic_authorization
from tests.components.redis import Redis
from tests.components.registry import Registry, htpasswd_line
from tests.gateway_process import GatewayProcess
from tests.scaleout.conftest import metric

CALLER = {"X-Forwarded-For": "192.0.2.10"}  # TEST-NET addresses: header values only
OTHER = {"X-Forwarded-For": "198.51.100.20"}


async def test_a_caller_over_its_rate_limit_gets_429_from_every_replica(
    upstream: Registry, redis: Redis, replicas
) -> None:
    """burst 3 at 0.2 req/s shared through Redis: the caller's 4th request on any replica is
    429 TOOMANYREQUESTS with Retry-After; another caller is unaffected."""
    config = {
        "upstreams": {"up": {"url": upstream.url}},
        "routing": {"default": "up"},
        "cache": {"enabled": False},
        "cluster": {"redis": {"url": redis.url, "key_prefix": "rl:"}},
        "clients": {
            "trusted_proxies": ["127.0.0.1/32"],
            "rate_limits": {"requests_per_second": 0.2, "burst": 3},
        },
    }
    group = replicas(3, config)
    async with aiohttp.ClientSession() as session:
        statuses = []
        for gateway in group:
            async with session.get(f"{gateway.url}/v2/", headers=CALLER) as response:
                statuses.append(response.status)
        assert statuses == [200, 200, 200]
        for gateway in group:
            async with session.get(f"{gateway.url}/v2/", headers=CALLER) as response:
                assert response.status == 429
                assert int(response.headers["Retry-After"]) >= 1
                body = await response.json()
                assert body["errors"][0]["code"] == "TOOMANYREQUESTS"
            async with session.get(f"{gateway.url}/v2/", headers=OTHER) as response:
                assert response.status == 200
        async with session.get(f"{group[0].url}/metrics") as response:
            text = await response.text()
    assert metric(text, "registry_gateway_rate_limited_total", reason="client") == 1


async def test_max_concurrency_keeps_at_most_two_requests_open_at_the_upstream(
    aiohttp_server, replicas
) -> None:
    """max_concurrency 2: 6 concurrent slow blob GETs never have more than 2 open upstream;
    with a short wait the excess gets 503 with Retry-After, counted as upstream_concurrency."""
    open_now = 0
    peak = 0

    async def blob(request: web.Request) -> web.StreamResponse:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.content_length = 4
            await response.prepare(request)
            for byte in b"slow":
                await asyncio.sleep(0.3)
                await response.write(bytes([byte]))
            await response.write_eof()
            return response
        finally:
            open_now -= 1

    async def base(_request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob)
    server: TestServer = await aiohttp_server(app, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.port}"

    def config(read: float) -> dict[str, object]:
        return {
            "upstreams": {"up": {"url": url, "max_concurrency": 2}},
            "routing": {"default": "up"},
            "cache": {"enabled": False},
            "timeouts": {"connect": 5, "read": read},
        }

    patient: GatewayProcess = replicas(1, config(30))[0]
    digests = [f"sha256:{i:064x}" for i in range(6)]
    async with aiohttp.ClientSession() as session:

        async def get(gateway: GatewayProcess, digest: str) -> tuple[int, str | None, bytes]:
            async with session.get(f"{gateway.url}/v2/lib/x/blobs/{digest}") as response:
                return response.status, response.headers.get("Retry-After"), await response.read()

        results = await asyncio.gather(*(get(patient, d) for d in digests))
        assert [r[0] for r in results] == [200] * 6 and {r[2] for r in results} == {b"slow"}
        assert peak == 2

        peak = 0
        hasty = replicas(1, config(0.5))[0]
        results = await asyncio.gather(*(get(hasty, d) for d in digests))
        async with session.get(f"{hasty.url}/metrics") as response:
            text = await response.text()
    assert peak <= 2
    busy = [r for r in results if r[0] == 503]
    assert [r[0] for r in results].count(200) == 2 and len(busy) == 4
    assert all(r[1] is not None and int(r[1]) >= 1 for r in busy)
    assert metric(text, "registry_gateway_rate_limited_total", reason="upstream_concurrency") == 4


async def test_failed_logins_are_counted_across_replicas(
    upstream: Registry, redis: Redis, replicas, tmp_path
) -> None:
    """login_limit 3: wrong passwords spread over two replicas are refused on both (429 with
    Retry-After) after at most 3 + 1 attempts, even the right password while refused."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_line("alice", "right-password"))
    config = {
        "upstreams": {"up": {"url": upstream.url}},
        "routing": {"default": "up"},
        "cache": {"enabled": False},
        "cluster": {"redis": {"url": redis.url, "key_prefix": "logins:"}},
        "clients": {
            "auth": "basic",
            "htpasswd": str(htpasswd),
            "login_limit": {"failures": 3, "window": 60},
        },
    }
    a, b = replicas(2, config)
    wrong = {"Authorization": basic_authorization("alice", "wrong-password")}
    async with aiohttp.ClientSession() as session:
        statuses = []
        for gateway in (a, b, a, b):
            async with session.get(f"{gateway.url}/v2/", headers=wrong) as response:
                statuses.append(response.status)
            await asyncio.sleep(0.3)  # the shared count is written in the background
        assert statuses.count(401) >= 3
        for gateway in (a, b):
            right = {"Authorization": basic_authorization("alice", "right-password")}
            async with session.get(f"{gateway.url}/v2/", headers=right) as response:
                assert response.status == 429
                assert int(response.headers["Retry-After"]) >= 1
