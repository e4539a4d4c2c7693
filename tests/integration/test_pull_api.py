"""The OCI pull API through the gateway to a real docker-registry (distribution 2.8).

Covers end-1 (/v2/), end-2 (blobs, with Range), end-3 (manifests, GET and HEAD, Accept
negotiation), end-8 (tags/list) and end-12 (referrers), and what the gateway relays of each.
"""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.components.images import PushedImage
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.integration.harness import (
    ALL_MANIFESTS_ACCEPT,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    fetch,
    logged,
    registry_gateway_config,
    sha256_digest,
)

RELAYED_MANIFEST_HEADERS = ("Docker-Content-Digest", "Content-Type", "Content-Length", "ETag")


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, registry_open: Registry
) -> Iterator[GatewayProcess]:
    """One gateway whose default upstream is registry_open."""
    with GatewayProcess.start(
        tmp_path_factory.mktemp("gateway-pull"), registry_gateway_config(registry_open)
    ) as process:
        yield process


def accept_lines(*values: str) -> CIMultiDict[str]:
    """One `Accept:` header line per value, as Docker's classic pull sends them."""
    headers: CIMultiDict[str] = CIMultiDict()
    for value in values:
        headers.add("Accept", value)
    return headers


async def test_base_endpoint_answers_200_with_api_version(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    """GET /v2/ answers 200 with Docker-Distribution-API-Version: registry/2.0 (end-1)."""
    answer = await fetch(http, "GET", f"{gateway.url}/v2/")

    assert answer.status == 200
    assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"


@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_manifest_get_relays_digest_type_length_and_etag(
    by: str,
    gateway: GatewayProcess,
    single_image: PushedImage,
    http: aiohttp.ClientSession,
) -> None:
    """A manifest GET by tag or digest returns the pushed bytes and the registry's headers."""
    reference = single_image.tag if by == "tag" else single_image.manifest_digest
    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/{single_image.repo}/manifests/{reference}",
        headers={"Accept": ALL_MANIFESTS_ACCEPT},
    )

    assert answer.status == 200
    assert sha256_digest(answer.body) == single_image.manifest_digest
    assert answer.headers["Docker-Content-Digest"] == single_image.manifest_digest
    assert answer.headers["Content-Type"] == OCI_MANIFEST
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    assert answer.headers["ETag"] == f'"{single_image.manifest_digest}"'


@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_manifest_head_has_no_body_and_the_get_headers(
    by: str,
    gateway: GatewayProcess,
    single_image: PushedImage,
    http: aiohttp.ClientSession,
) -> None:
    """HEAD on a manifest answers 200 with no body and the same headers a GET carries."""
    reference = single_image.tag if by == "tag" else single_image.manifest_digest
    url = f"{gateway.url}/v2/{single_image.repo}/manifests/{reference}"
    headers = {"Accept": ALL_MANIFESTS_ACCEPT}

    get = await fetch(http, "GET", url, headers=headers)
    head = await fetch(http, "HEAD", url, headers=headers)

    assert head.status == 200
    assert head.body == b""
    for name in RELAYED_MANIFEST_HEADERS:
        assert head.headers.get(name) == get.headers.get(name), name
    assert int(head.headers["Content-Length"]) == len(get.body)


async def test_docker_style_accept_lines_are_all_forwarded(
    gateway: GatewayProcess, multiarch_image: PushedImage, http: aiohttp.ClientSession
) -> None:
    """An OCI index comes back when its type is on the second of several Accept lines."""
    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/{multiarch_image.repo}/manifests/{multiarch_image.tag}",
        headers=accept_lines(DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX),
    )

    assert answer.status == 200
    assert answer.headers["Content-Type"] == OCI_INDEX
    assert sha256_digest(answer.body) == multiarch_image.manifest_digest
    assert [m["digest"] for m in answer.json()["manifests"]] == multiarch_image.child_digests


async def test_index_is_refused_when_its_type_is_not_accepted(
    gateway: GatewayProcess, multiarch_image: PushedImage, http: aiohttp.ClientSession
) -> None:
    """With only Docker types accepted, the registry's 404 MANIFEST_UNKNOWN is relayed."""
    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/{multiarch_image.repo}/manifests/{multiarch_image.tag}",
        headers=accept_lines(DOCKER_MANIFEST, DOCKER_LIST),
    )

    assert answer.status == 404
    assert answer.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert "OCI index" in answer.json()["errors"][0]["message"]


@pytest.mark.parametrize("accept", [None, "*/*"], ids=["no-accept", "wildcard"])
async def test_caller_naming_no_manifest_type_gets_the_stored_index(
    accept: str | None,
    gateway: GatewayProcess,
    multiarch_image: PushedImage,
    http: aiohttp.ClientSession,
) -> None:
    """Without a manifest type in Accept the gateway asks for all four and the index comes back."""
    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/{multiarch_image.repo}/manifests/{multiarch_image.tag}",
        headers={} if accept is None else {"Accept": accept},
        skip_auto_headers=["Accept"],
    )

    assert answer.status == 200
    assert answer.headers["Content-Type"] == OCI_INDEX
    assert answer.headers["Docker-Content-Digest"] == multiarch_image.manifest_digest


async def test_blob_get_and_head_relay_the_blob(
    gateway: GatewayProcess, single_image: PushedImage, http: aiohttp.ClientSession
) -> None:
    """Blob GET returns the exact bytes with Docker-Content-Digest; HEAD has the same length."""
    for digest in single_image.blob_digests:
        url = f"{gateway.url}/v2/{single_image.repo}/blobs/{digest}"
        get = await fetch(http, "GET", url)
        head = await fetch(http, "HEAD", url)

        assert get.status == 200
        assert sha256_digest(get.body) == digest
        assert get.headers["Docker-Content-Digest"] == digest
        assert head.status == 200
        assert head.body == b""
        assert head.headers["Docker-Content-Digest"] == digest
        assert int(head.headers["Content-Length"]) == len(get.body)


async def test_blob_range_returns_206_with_content_range(
    gateway: GatewayProcess, single_image: PushedImage, http: aiohttp.ClientSession
) -> None:
    """`Range: bytes=10-99` is forwarded; the 206, Content-Range and the slice come back."""
    digest = single_image.blob_digests[-1]
    url = f"{gateway.url}/v2/{single_image.repo}/blobs/{digest}"
    whole = await fetch(http, "GET", url)

    part = await fetch(http, "GET", url, headers={"Range": "bytes=10-99"})

    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 10-99/{len(whole.body)}"
    assert part.body == whole.body[10:100]
    assert part.headers.get("Accept-Ranges") == "bytes"


async def test_unsatisfiable_range_returns_416(
    gateway: GatewayProcess, single_image: PushedImage, http: aiohttp.ClientSession
) -> None:
    """A Range past the end of the blob is answered 416 with `Content-Range: bytes */size`."""
    digest = single_image.blob_digests[-1]
    url = f"{gateway.url}/v2/{single_image.repo}/blobs/{digest}"
    size = len((await fetch(http, "GET", url)).body)

    async with http.get(url, headers={"Range": f"bytes={size + 100}-"}) as response:
        status, headers = response.status, response.headers

    assert status == 416
    assert headers["Content-Range"] == f"bytes */{size}"
    assert headers.get("X-Request-ID")


async def test_tags_list_is_relayed(
    gateway: GatewayProcess,
    single_image: PushedImage,
    http: aiohttp.ClientSession,
) -> None:
    """tags/list answers the registry's JSON with the pushed tag (end-8a)."""
    answer = await fetch(http, "GET", f"{gateway.url}/v2/{single_image.repo}/tags/list")

    assert answer.status == 200
    assert answer.json() == {"name": single_image.repo, "tags": [single_image.tag]}


async def test_referrers_404_from_distribution_2_8_is_relayed_as_404(
    gateway: GatewayProcess, single_image: PushedImage, http: aiohttp.ClientSession
) -> None:
    """distribution 2.8 has no referrers API: its 404 reaches the caller as 404, never a 200."""
    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/{single_image.repo}/referrers/{single_image.manifest_digest}",
    )

    assert answer.status == 404


async def test_unknown_manifest_404_body_is_relayed(
    gateway: GatewayProcess, single_image: PushedImage, http: aiohttp.ClientSession
) -> None:
    """The registry's MANIFEST_UNKNOWN 404 and its JSON body reach the caller unchanged."""
    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/{single_image.repo}/manifests/no-such-tag",
        headers={"Accept": ALL_MANIFESTS_ACCEPT},
    )

    assert answer.status == 404
    assert answer.json() == {
        "errors": [
            {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
             "detail": {"Tag": "no-such-tag"}}
        ]
    }  # fmt: skip


async def test_unknown_blob_404_is_relayed(
    gateway: GatewayProcess, single_image: PushedImage, http: aiohttp.ClientSession
) -> None:
    """A blob the registry lacks is a 404 BLOB_UNKNOWN for the caller."""
    answer = await fetch(
        http, "GET", f"{gateway.url}/v2/{single_image.repo}/blobs/sha256:{'0' * 64}"
    )

    assert answer.status == 404
    assert answer.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


async def test_request_id_from_the_caller_is_echoed(
    gateway: GatewayProcess, single_image: PushedImage, http: aiohttp.ClientSession
) -> None:
    """A sane caller X-Request-ID comes back on the response and on the request's log line."""
    answer = await fetch(
        http,
        "GET",
        f"{gateway.url}/v2/{single_image.repo}/manifests/{single_image.tag}",
        headers={"X-Request-ID": "it-request-0001", "Accept": ALL_MANIFESTS_ACCEPT},
    )

    assert answer.status == 200
    assert answer.headers["X-Request-ID"] == "it-request-0001"
    lines = logged(
        gateway,
        lambda lines: any(
            line.get("request_id") == "it-request-0001" and line.get("event") == "request_completed"
            for line in lines
        ),
    )
    assert any(
        line.get("request_id") == "it-request-0001" and line.get("event") == "request_completed"
        for line in lines
    )
