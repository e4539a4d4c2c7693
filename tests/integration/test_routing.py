"""Choosing the upstream: ns beats Host beats path prefix beats default; aliases; no stray dials.

Two real registries hold different content under the same repository names, so the manifest
digest a request gets back tells which upstream served it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.integration.harness import (
    ALL_MANIFESTS_ACCEPT,
    GatewayFactory,
    assert_oci_error,
    fetch,
    gateway_config,
    push_marker_image,
    registry_gateway_config,
    upstream,
)
from tests.integration.loopback import OTHER_HOST, Recorder, ServerFactory, authority

A_KEY = "a.registry.test"
B_KEY = "b.registry.test"
REPO = "routing/app"


@dataclass(frozen=True)
class TwoRegistries:
    """Digests of what each registry stores; keys are `<registry>:<repo>`."""

    digests: dict[str, str]

    def of(self, registry: str, repo: str) -> str:
        return self.digests[f"{registry}:{repo}"]


@pytest.fixture(scope="module")
def registry_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A second open registry, with content of its own."""
    with Registry.start(tmp_path_factory.mktemp("registry-b")) as registry:
        yield registry


@pytest.fixture(scope="module")
def contents(registry_open: Registry, registry_b: Registry) -> TwoRegistries:
    """`routing/app` on both; each also holds the other's key as a repository prefix."""
    digests = {}
    for label, registry in (("A", registry_open), ("B", registry_b)):
        for repo in (REPO, f"{A_KEY}/{REPO}", f"{B_KEY}/{REPO}"):
            image = push_marker_image(registry, repo, "v1", f"{label} {repo}")
            digests[f"{label}:{repo}"] = image.manifest_digest
    return TwoRegistries(digests)


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, registry_open: Registry, registry_b: Registry
) -> Iterator[GatewayProcess]:
    """Upstreams A (default) and B; Host `localhost` maps to B."""
    config = gateway_config(
        {A_KEY: upstream(registry_open.url), B_KEY: upstream(registry_b.url)},
        default=A_KEY,
        hosts={"localhost": B_KEY},
    )
    with GatewayProcess.start(tmp_path_factory.mktemp("gateway-routing"), config) as process:
        yield process


async def digest_of(
    http: aiohttp.ClientSession,
    url: str,
    *,
    host: str | None = None,
    ns: str | None = None,
) -> str:
    headers = {"Accept": ALL_MANIFESTS_ACCEPT}
    if host is not None:
        headers["Host"] = host
    answer = await fetch(
        http, "GET", url, headers=headers, params={"ns": ns} if ns is not None else None
    )
    assert answer.status == 200, (url, host, ns, answer.status, answer.body[:300])
    return answer.headers["Docker-Content-Digest"]


async def test_default_upstream_serves_plain_names(
    gateway: GatewayProcess, contents: TwoRegistries, http: aiohttp.ClientSession
) -> None:
    """With no ns, no mapped Host and no known prefix, routing.default serves the name."""
    url = f"{gateway.url}/v2/{REPO}/manifests/v1"

    assert await digest_of(http, url) == contents.of("A", REPO)
    assert await digest_of(http, url, host="unmapped.example") == contents.of("A", REPO)


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "LOCALHOST:{port}", "LocalHost"])
async def test_mapped_host_header_selects_its_upstream(
    host: str, gateway: GatewayProcess, contents: TwoRegistries, http: aiohttp.ClientSession
) -> None:
    """routing.hosts matches the Host header case-insensitively, with or without a port."""
    url = f"{gateway.url}/v2/{REPO}/manifests/v1"

    assert await digest_of(http, url, host=host.format(port=gateway.port)) == contents.of("B", REPO)


async def test_path_prefix_beats_default(
    gateway: GatewayProcess, contents: TwoRegistries, http: aiohttp.ClientSession
) -> None:
    """`/v2/<upstream key>/<name>` goes to that upstream with the prefix removed."""
    url = f"{gateway.url}/v2/{B_KEY}/{REPO}/manifests/v1"

    assert await digest_of(http, url) == contents.of("B", REPO)


async def test_host_beats_path_prefix(
    gateway: GatewayProcess, contents: TwoRegistries, http: aiohttp.ClientSession
) -> None:
    """A mapped Host wins over a path prefix: the prefix stays part of the name upstream."""
    url = f"{gateway.url}/v2/{A_KEY}/{REPO}/manifests/v1"

    assert await digest_of(http, url, host="localhost") == contents.of("B", f"{A_KEY}/{REPO}")


async def test_ns_beats_host_and_is_echoed(
    gateway: GatewayProcess, contents: TwoRegistries, http: aiohttp.ClientSession
) -> None:
    """`?ns=` wins over a mapped Host, and the gateway echoes it in OCI-Namespace."""
    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/{REPO}/manifests/v1",
        params={"ns": A_KEY},
        headers={"Host": "localhost", "Accept": ALL_MANIFESTS_ACCEPT},
    )

    assert answer.status == 200
    assert answer.headers["Docker-Content-Digest"] == contents.of("A", REPO)
    assert answer.headers["OCI-Namespace"] == A_KEY


async def test_ns_beats_path_prefix(
    gateway: GatewayProcess, contents: TwoRegistries, http: aiohttp.ClientSession
) -> None:
    """With `?ns=`, a first path component naming another upstream is just part of the name."""
    url = f"{gateway.url}/v2/{B_KEY}/{REPO}/manifests/v1"

    assert await digest_of(http, url, ns=A_KEY) == contents.of("A", f"{B_KEY}/{REPO}")


async def test_routing_applies_to_blobs_too(
    gateway: GatewayProcess,
    registry_b: Registry,
    http: aiohttp.ClientSession,
) -> None:
    """A blob only B holds is served via prefix, Host and ns, and is unknown to the default."""
    image = push_marker_image(registry_b, "routing/only-b", "v1", "only in B")
    path = f"routing/only-b/blobs/{image.layer_digest}"

    by_prefix = await fetch(http, "GET", f"{gateway.url}/v2/{B_KEY}/{path}")
    by_host = await fetch(http, "GET", f"{gateway.url}/v2/{path}", headers={"Host": "localhost"})
    by_ns = await fetch(http, "GET", f"{gateway.url}/v2/{path}", params={"ns": B_KEY})
    by_default = await fetch(http, "GET", f"{gateway.url}/v2/{path}")

    assert [a.body for a in (by_prefix, by_host, by_ns)] == [image.layer] * 3
    assert by_default.status == 404


@pytest.fixture(scope="module")
def hub_gateway(
    tmp_path_factory: pytest.TempPathFactory, registry_open: Registry, registry_b: Registry
) -> Iterator[GatewayProcess]:
    """`docker.io` is registry_open (default); Host `localhost` maps to another upstream."""
    config = gateway_config(
        {"docker.io": upstream(registry_open.url), "other.test": upstream(registry_b.url)},
        default="docker.io",
        hosts={"localhost": "other.test"},
    )
    with GatewayProcess.start(tmp_path_factory.mktemp("gateway-hub"), config) as process:
        yield process


@pytest.fixture(scope="module")
def alpine(registry_open: Registry) -> str:
    """The manifest digest of `library/alpine:3` in the registry standing in for Docker Hub."""
    return push_marker_image(registry_open, "library/alpine", "3", "hub alpine").manifest_digest


@pytest.mark.parametrize(
    "path",
    [
        "alpine",
        "library/alpine",
        "docker.io/alpine",
        "docker.io/library/alpine",
        "index.docker.io/library/alpine",
        "registry-1.docker.io/alpine",
    ],
)
async def test_docker_hub_names_and_aliases_reach_library(
    path: str, hub_gateway: GatewayProcess, alpine: str, http: aiohttp.ClientSession
) -> None:
    """Single names get `library/`; index.docker.io and registry-1.docker.io mean docker.io."""
    assert await digest_of(http, f"{hub_gateway.url}/v2/{path}/manifests/3") == alpine


@pytest.mark.parametrize(
    ("ns", "name"),
    [("registry-1.docker.io", "library/alpine"), ("index.docker.io", "alpine"),
     ("docker.io", "alpine")],
)  # fmt: skip
async def test_docker_hub_alias_in_ns_is_docker_io(
    ns: str, name: str, hub_gateway: GatewayProcess, alpine: str, http: aiohttp.ClientSession
) -> None:
    """`?ns=registry-1.docker.io` routes to docker.io (over a mapped Host) and is echoed as sent."""
    answer = await fetch(
        http,
        "GET",
        f"{hub_gateway.url}/v2/{name}/manifests/3",
        params={"ns": ns},
        headers={"Host": "localhost", "Accept": ALL_MANIFESTS_ACCEPT},
    )

    assert answer.status == 200
    assert answer.headers["Docker-Content-Digest"] == alpine
    assert answer.headers["OCI-Namespace"] == ns


async def answer_ok(_request: web.Request) -> web.Response:
    return web.json_response({})


@pytest.fixture
async def counting_apps(aiohttp_server: ServerFactory) -> list[tuple[str, Recorder]]:
    """Two loopback apps that answer everything 200 and count what reaches them:
    one on 127.0.0.1:<port>, one on 127.0.0.2:80 (a host a name can spell without a port)."""
    apps = []
    for host, port in (("127.0.0.1", None), (OTHER_HOST, 80)):
        recorder = Recorder()
        app = recorder.app()
        app.router.add_route("*", "/{tail:.*}", answer_ok)
        server = await aiohttp_server(app, host=host, port=port)
        apps.append((authority(server) if port is None else host, recorder))
    return apps


async def test_hosts_named_by_callers_are_never_dialled(
    counting_apps: list[tuple[str, Recorder]],
    registry_open: Registry,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """Host names in paths, ns and Host headers that are not configured upstreams get no request."""
    gateway = start_gateway(registry_gateway_config(registry_open))
    statuses = []
    for named, _recorder in counting_apps:
        for route in ("manifests/latest", f"blobs/sha256:{'1' * 64}", "tags/list"):
            statuses.append(
                (await fetch(http, "GET", f"{gateway.url}/v2/{named}/x/{route}")).status
            )
            by_ns = await fetch(http, "GET", f"{gateway.url}/v2/x/{route}", params={"ns": named})
            assert_oci_error(by_ns, 404, "NAME_UNKNOWN")
            by_host = await fetch(
                http, "GET", f"{gateway.url}/v2/x/{route}", headers={"Host": named}
            )
            statuses.append(by_host.status)

    assert all(status in (400, 404) for status in statuses), statuses
    for named, recorder in counting_apps:
        assert recorder.requests == [], f"{named} was dialled"
