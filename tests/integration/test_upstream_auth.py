"""Upstream credentials: Basic and Bearer against real registries, where credentials may go.

Real registries prove the credential forms and the token flow (one token fetch for many
concurrent requests, none when warm); loopback apps show what the gateway sends to a token
server on another host and that a caller's own Authorization never goes upstream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.components.ports import wait_until
from tests.components.registry import Registry
from tests.integration.harness import (
    ALL_MANIFESTS_ACCEPT,
    OCI_MANIFEST,
    GatewayFactory,
    MarkerImage,
    access_status,
    fetch,
    gateway_config,
    push_marker_image,
    registry_access_lines,
    registry_gateway_config,
    sample,
    scrape,
    upstream,
    write_docker_config,
)
from tests.integration.loopback import OTHER_HOST, Recorder, ServerFactory, authority, base_url

PASSWORD_ENV = "IT_UPSTREAM_PASSWORD"
TOKEN_ENV = "IT_UPSTREAM_TOKEN"


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


async def get_manifest(
    http: aiohttp.ClientSession, gateway_url: str, repo: str, reference: str
) -> tuple[int, str | None]:
    answer = await fetch(
        http,
        "GET",
        f"{gateway_url}/v2/{repo}/manifests/{reference}",
        headers={"Accept": ALL_MANIFESTS_ACCEPT},
    )
    return answer.status, answer.headers.get("Docker-Content-Digest")


@pytest.fixture(scope="module")
def basic_image(registry_htpasswd: Registry) -> MarkerImage:
    return push_marker_image(registry_htpasswd, "auth/basic", "v1", "behind basic auth")


def write_secret(path: Path, value: str) -> Path:
    """Replace a secret file atomically, with an mtime that differs from the previous one."""
    previous = path.stat().st_mtime_ns if path.exists() else None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value + "\n")
    if previous is not None:
        os.utime(tmp, ns=(previous + 2_000_000_000, previous + 2_000_000_000))
    tmp.replace(path)
    return path


CredentialForm = Callable[[Registry, Path], tuple[dict[str, Any], dict[str, str]]]

BASIC_FORMS: dict[str, CredentialForm] = {
    "inline": lambda r, _d: ({"username": r.username, "password": r.password}, {}),
    "password_env": lambda r, _d: (
        {"username": r.username, "password_env": PASSWORD_ENV},
        {PASSWORD_ENV: r.password},
    ),
    "password_file": lambda r, d: (
        {"username": r.username, "password_file": str(write_secret(d / "pw", r.password))},
        {},
    ),
    "docker_config": lambda r, d: (
        {
            "docker_config": str(
                write_docker_config(d / "config.json", r.host, r.username, r.password)
            )
        },
        {},
    ),
}


@pytest.mark.parametrize("form", list(BASIC_FORMS))
async def test_basic_challenge_registry_serves_with_each_credential_form(
    form: str,
    registry_htpasswd: Registry,
    basic_image: MarkerImage,
    start_gateway: GatewayFactory,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    """username+password, password_env, password_file and docker_config all pass Basic auth."""
    credentials, env = BASIC_FORMS[form](registry_htpasswd, tmp_path)
    gateway = start_gateway(
        registry_gateway_config(registry_htpasswd, credentials=credentials), env=env
    )

    status, digest = await get_manifest(http, gateway.url, basic_image.repo, basic_image.tag)
    blob = await fetch(
        http, "GET", f"{gateway.url}/v2/{basic_image.repo}/blobs/{basic_image.layer_digest}"
    )

    assert (status, digest) == (200, basic_image.manifest_digest)
    assert blob.status == 200
    assert blob.body == basic_image.layer


async def test_rotated_password_file_is_picked_up_without_restart(
    tmp_path: Path, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """After the registry's password changes and the file is rewritten, pulls work again."""
    with Registry.start(tmp_path / "registry", "htpasswd", password="first-password") as registry:
        image = push_marker_image(registry, "auth/rotate", "v1", "rotation")
        password_file = write_secret(tmp_path / "password", "first-password")
        gateway = start_gateway(
            registry_gateway_config(
                registry,
                credentials={"username": registry.username, "password_file": str(password_file)},
            )
        )
        pid = gateway.process.pid
        assert await get_manifest(http, gateway.url, image.repo, image.tag) == (
            200, image.manifest_digest,
        )  # fmt: skip

        registry.set_password("second-password")
        write_secret(password_file, "second-password")

        assert await get_manifest(http, gateway.url, image.repo, image.tag) == (
            200, image.manifest_digest,
        )  # fmt: skip
        assert gateway.process.pid == pid and gateway.process.alive()


def token_gateway_config(registry: Registry) -> dict[str, Any]:
    config = registry_gateway_config(
        registry, credentials={"username": registry.username, "password": registry.password}
    )
    # These tests count token fetches over repeated pulls: every pull must reach the upstream.
    return {**config, "cache": {"enabled": False}}


async def test_token_registry_twenty_concurrent_cold_pulls_fetch_one_token(
    registry_token: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """20 concurrent manifest GETs on a cold gateway cause exactly one token fetch."""
    # Repeated on three fresh gateways: a duplicate fetch depends on response timing.
    image = push_marker_image(registry_token, "auth/token-burst", "v1", "token burst")
    issued = []
    for _attempt in range(3):
        gateway = start_gateway(token_gateway_config(registry_token))
        tokens_before = registry_token.token_count()

        cold = await asyncio.gather(
            *(get_manifest(http, gateway.url, image.repo, image.tag) for _ in range(20))
        )

        assert cold == [(200, image.manifest_digest)] * 20
        issued.append(registry_token.token_count() - tokens_before)
        gateway.stop()
    assert issued == [1, 1, 1], f"tokens issued per burst of 20: {issued}"


async def test_fetched_token_metric_counts_token_server_fetches(
    registry_token: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """upstream_tokens_total{result="fetched"} equals the tokens the token server issued."""
    # The challenge is learnt first, so the burst on a second repository takes the coalesced
    # pre-emptive path: one fetch, 19 requests waiting for it (or finding it cached).
    first = push_marker_image(registry_token, "auth/token-metric-a", "v1", "token metric a")
    second = push_marker_image(registry_token, "auth/token-metric-b", "v1", "token metric b")
    gateway = start_gateway(token_gateway_config(registry_token))
    tokens_before = registry_token.token_count()
    assert await get_manifest(http, gateway.url, first.repo, first.tag) == (
        200, first.manifest_digest,
    )  # fmt: skip

    results = await asyncio.gather(
        *(get_manifest(http, gateway.url, second.repo, second.tag) for _ in range(20))
    )

    assert results == [(200, second.manifest_digest)] * 20
    metrics = await scrape(http, gateway.url)
    fetched = sample(metrics, "registry_gateway_upstream_tokens_total", result="fetched")
    cached = sample(metrics, "registry_gateway_upstream_tokens_total", result="cached")
    issued = registry_token.token_count() - tokens_before
    assert issued == 2
    assert (fetched, cached) == (issued, 19), (
        f"metric says fetched={fetched:g} cached={cached:g}; the token server issued {issued}"
    )


async def test_token_registry_warm_requests_fetch_no_token_and_see_no_401(
    registry_token: Registry, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """With a cached token, manifest and blob GETs send it at once: no fetch, no 401 trip."""
    image = push_marker_image(registry_token, "auth/token-warm", "v1", "token warm")
    gateway = start_gateway(token_gateway_config(registry_token))
    assert await get_manifest(http, gateway.url, image.repo, image.tag) == (
        200, image.manifest_digest,
    )  # fmt: skip
    tokens_before = registry_token.token_count()
    metrics = await scrape(http, gateway.url)
    unauthorized_before = sample(metrics, "registry_gateway_upstream_requests_total", code="401")
    cached_before = sample(metrics, "registry_gateway_upstream_tokens_total", result="cached")
    fetched_before = sample(metrics, "registry_gateway_upstream_tokens_total", result="fetched")
    manifest_path = f"/v2/{image.repo}/manifests/{image.tag}"
    assert wait_until(lambda: registry_access_lines(registry_token, manifest_path), timeout=5)
    lines_before = len(registry_access_lines(registry_token, manifest_path))

    warm = await asyncio.gather(
        *(get_manifest(http, gateway.url, image.repo, image.tag) for _ in range(10))
    )
    blob = await fetch(http, "GET", f"{gateway.url}/v2/{image.repo}/blobs/{image.layer_digest}")

    assert warm == [(200, image.manifest_digest)] * 10
    assert blob.body == image.layer
    assert registry_token.token_count() == tokens_before
    metrics = await scrape(http, gateway.url)
    assert sample(metrics, "registry_gateway_upstream_tokens_total", result="fetched") == (
        fetched_before
    )
    assert sample(metrics, "registry_gateway_upstream_tokens_total", result="cached") == (
        cached_before + 11
    )
    assert sample(metrics, "registry_gateway_upstream_requests_total", code="401") == (
        unauthorized_before
    )
    assert wait_until(
        lambda: len(registry_access_lines(registry_token, manifest_path)) >= lines_before + 10,
        timeout=5,
    )
    warm_lines = registry_access_lines(registry_token, manifest_path)[lines_before:]
    assert [access_status(line) for line in warm_lines] == [200] * 10


async def paced_token_flow(
    aiohttp_server: ServerFactory, *, unauthorized_delay: float, token_delay: float
) -> tuple[Recorder, TestServer]:
    """A loopback registry + token service on one host, with chosen pacing.

    The n-th anonymous manifest GET gets its 401 after n * `unauthorized_delay` seconds; the
    token service answers after `token_delay` seconds. Returns the token recorder and the app.
    """
    tokens = Recorder()
    anonymous = 0

    async def token(request: web.Request) -> web.Response:
        await asyncio.sleep(token_delay)
        return web.json_response({"token": "paced-token", "expires_in": 300})

    async def manifest(request: web.Request) -> web.Response:
        nonlocal anonymous
        if request.headers.get("Authorization") == "Bearer paced-token":
            return web.Response(body=b"{}", headers={"Content-Type": OCI_MANIFEST})
        anonymous += 1
        await asyncio.sleep(anonymous * unauthorized_delay)
        challenge = (
            f'Bearer realm="http://{request.host}/token",service="paced",'
            f'scope="repository:{request.match_info["name"]}:pull"'
        )
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            status=401,
            headers={"WWW-Authenticate": challenge},
        )

    app = tokens.app()
    app.router.add_get("/token", token)
    app.router.add_get("/v2/{name:.+}/manifests/{reference}", manifest)
    return tokens, await aiohttp_server(app)


def token_requests(recorder: Recorder) -> int:
    return sum(1 for seen in recorder.requests if seen.path == "/token")


async def test_cold_requests_whose_401s_arrive_after_the_fetch_reuse_its_token(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """Concurrent cold requests answered 401 one after another share one token fetch."""
    recorder, server = await paced_token_flow(
        aiohttp_server, unauthorized_delay=0.03, token_delay=0
    )
    key = authority(server)
    gateway = start_gateway(
        gateway_config(
            {key: upstream(base_url(server), credentials={"username": "u", "password": "p"})},
            default=key,
        )
    )

    results = await asyncio.gather(
        *(get_manifest(http, gateway.url, "team/app", "v1") for _ in range(10))
    )

    assert [status for status, _ in results] == [200] * 10
    assert token_requests(recorder) == 1, f"{token_requests(recorder)} token fetches for 10 GETs"


async def test_requests_waiting_for_a_token_fetch_are_not_counted_as_fetches(
    aiohttp_server: ServerFactory, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """20 GETs waiting on one slow token fetch count one `fetched`, as the token service saw."""
    recorder, server = await paced_token_flow(aiohttp_server, unauthorized_delay=0, token_delay=0.3)
    key = authority(server)
    gateway = start_gateway(
        gateway_config(
            {key: upstream(base_url(server), credentials={"username": "u", "password": "p"})},
            default=key,
        )
    )

    results = await asyncio.gather(
        *(get_manifest(http, gateway.url, "team/app", "v1") for _ in range(20))
    )

    assert [status for status, _ in results] == [200] * 20
    assert token_requests(recorder) == 1
    metrics = await scrape(http, gateway.url)
    fetched = sample(metrics, "registry_gateway_upstream_tokens_total", result="fetched")
    assert fetched == 1, f"metric says {fetched:g} fetched; the token service saw 1 request"


@pytest.fixture
async def foreign_token_server(
    aiohttp_server: ServerFactory,
) -> tuple[Recorder, TestServer, TestServer]:
    """A registry app on 127.0.0.1 whose Bearer realm is a token app on 127.0.0.2.

    The token app hands out a token to anyone; the registry accepts only tokens it issued.
    """
    tokens = Recorder()
    issued: list[str] = []

    async def token(request: web.Request) -> web.Response:
        issued.append(f"loopback-token-{len(issued)}")
        return web.json_response({"token": issued[-1], "expires_in": 300})

    token_app = tokens.app()
    token_app.router.add_get("/token", token)
    token_server = await aiohttp_server(token_app, host=OTHER_HOST)

    async def manifest(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.headers.get("Authorization") in {f"Bearer {t}" for t in issued}:
            return web.Response(body=b"{}", headers={"Content-Type": OCI_MANIFEST})
        challenge = (
            f'Bearer realm="{base_url(token_server)}/token",service="loopback-registry",'
            f'scope="repository:{name}:pull"'
        )
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            status=401,
            headers={"WWW-Authenticate": challenge},
        )

    registry = Recorder()
    registry_app = registry.app()
    registry_app.router.add_get("/v2/{name:.+}/manifests/{reference}", manifest)
    return tokens, token_server, await aiohttp_server(registry_app)


@pytest.mark.parametrize("listed", [None, "host", "host:port"])
async def test_token_server_on_another_host_gets_credentials_only_when_listed(
    listed: str | None,
    foreign_token_server: tuple[Recorder, TestServer, TestServer],
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """A realm on another host gets an anonymous token request unless token_realms lists it."""
    tokens, token_server, registry = foreign_token_server
    realms = {None: [], "host": [OTHER_HOST], "host:port": [authority(token_server)]}[listed]
    key = authority(registry)
    gateway = start_gateway(
        gateway_config(
            {
                key: upstream(
                    base_url(registry),
                    token_realms=realms,
                    credentials={"username": "robot", "password": "s3cret"},
                )
            },
            default=key,
        )
    )

    status, _digest = await get_manifest(http, gateway.url, "team/app", "v1")

    assert status == 200
    assert len(tokens.requests) == 1
    token_request = tokens.requests[0]
    assert token_request.query.getall("scope") == ["repository:team/app:pull"]
    assert token_request.query.get("service") == "loopback-registry"
    if listed is None:
        assert "Authorization" not in token_request.headers
        assert "s3cret" not in str(token_request.query)
        assert any(line.get("event") == "token_realm_not_allowed" for line in gateway.log_lines())
    else:
        assert token_request.headers.get("Authorization") == basic("robot", "s3cret")


async def upstream_recorder(aiohttp_server: ServerFactory) -> tuple[Recorder, TestServer]:
    """A loopback registry answering every manifest and blob GET 200, recording headers."""
    recorder = Recorder()

    async def manifest(request: web.Request) -> web.Response:
        return web.Response(body=b"{}", headers={"Content-Type": OCI_MANIFEST})

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=b"blob bytes")

    app = recorder.app()
    app.router.add_get("/v2/{name:.+}/manifests/{reference}", manifest)
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob)
    return recorder, await aiohttp_server(app)


@pytest.mark.parametrize("credentials", [None, {"token": "gateway-static-token"}])
async def test_caller_authorization_and_cookies_never_go_upstream(
    credentials: dict[str, str] | None,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """The caller's Authorization and Cookie stay at the gateway; upstream sees only its own."""
    recorder, server = await upstream_recorder(aiohttp_server)
    key = authority(server)
    extra = {"credentials": credentials} if credentials else {}
    # The loopback blob is not content-addressed: relay it uncached (the cache would abort it).
    gateway = start_gateway(
        gateway_config(
            {key: upstream(base_url(server), **extra)}, default=key, cache={"enabled": False}
        )
    )
    caller_headers = {
        "Authorization": "Bearer caller-private-token",
        "Cookie": "session=caller-cookie",
        "Proxy-Authorization": "Basic Y2FsbGVyOnByb3h5",
    }

    manifest = await fetch(
        http, "GET", f"{gateway.url}/v2/team/app/manifests/v1", headers=caller_headers
    )
    blob = await fetch(
        http, "GET", f"{gateway.url}/v2/team/app/blobs/sha256:{'2' * 64}", headers=caller_headers
    )

    assert (manifest.status, blob.status) == (200, 200)
    assert len(recorder.requests) == 2
    expected = "Bearer gateway-static-token" if credentials else None
    for seen in recorder.requests:
        assert seen.headers.get("Authorization") == expected
        assert "Cookie" not in seen.headers
        assert "Proxy-Authorization" not in seen.headers
        assert "caller-private-token" not in json.dumps(dict(seen.headers))


@pytest.mark.parametrize("form", ["token", "token_env", "token_file"])
async def test_static_token_credentials_are_sent_as_bearer(
    form: str,
    aiohttp_server: ServerFactory,
    start_gateway: GatewayFactory,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    """token, token_env and token_file credentials reach the upstream as `Bearer <token>`."""
    recorder, server = await upstream_recorder(aiohttp_server)
    key = authority(server)
    value = f"static-{form}-value"
    env: dict[str, str] = {}
    if form == "token":
        credentials = {"token": value}
    elif form == "token_env":
        credentials, env = {"token_env": TOKEN_ENV}, {TOKEN_ENV: value}
    else:
        credentials = {"token_file": str(write_secret(tmp_path / "token", value))}
    gateway = start_gateway(
        gateway_config({key: upstream(base_url(server), credentials=credentials)}, default=key),
        env=env,
    )

    status, _digest = await get_manifest(http, gateway.url, "team/app", "v1")

    assert status == 200
    assert recorder.authorizations() == [f"Bearer {value}"]
