"""Errors the gateway produces itself: always the OCI envelope, the right status, a request id.

CONTRACT.md "HTTP surface": never a traceback, never an HTML page, never a 500 for bad input.
"""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from tests.components.ports import free_port
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.integration.harness import (
    GatewayFactory,
    assert_oci_error,
    fetch,
    gateway_config,
    registry_gateway_config,
    upstream,
)

DIGEST = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, registry_open: Registry
) -> Iterator[GatewayProcess]:
    with GatewayProcess.start(
        tmp_path_factory.mktemp("gateway-errors"), registry_gateway_config(registry_open)
    ) as process:
        yield process


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v2/it/single/manifests/v1"),  # end-7
        ("DELETE", f"/v2/it/single/manifests/{DIGEST}"),  # end-9
        ("DELETE", f"/v2/it/single/blobs/{DIGEST}"),  # end-10
        ("POST", "/v2/it/single/blobs/uploads/"),  # end-4a
        ("POST", f"/v2/it/single/blobs/uploads/?digest={DIGEST}"),  # end-4b
        ("PATCH", "/v2/it/single/blobs/uploads/3f1c2a"),  # end-5
        ("PUT", f"/v2/it/single/blobs/uploads/3f1c2a?digest={DIGEST}"),  # end-6
        ("POST", "/v2/it/single/blobs/uploads/?mount=" + DIGEST + "&from=it/other"),  # end-11
    ],
)
async def test_push_and_delete_endpoints_answer_405_unsupported(
    method: str, path: str, gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    """Every push/delete endpoint answers 405 UNSUPPORTED for an upstream without push: true."""
    answer = await fetch(http, method, f"{gateway.url}{path}", data=b"{}")

    assert_oci_error(answer, 405, "UNSUPPORTED")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/Upper/Case/manifests/latest",
        "/v2/double..dot/manifests/latest",
        "/v2/trailing-/manifests/latest",
        "/v2/a%20b/blobs/" + DIGEST,
        "/v2/" + "a" * 256 + "/tags/list",
    ],
)
async def test_invalid_name_is_400_name_invalid(
    path: str, gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    """A name outside the OCI grammar (or over 255 characters) is 400 NAME_INVALID."""
    answer = await fetch(http, "GET", f"{gateway.url}{path}")

    assert_oci_error(answer, 400, "NAME_INVALID")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/it/single/blobs/sha256:xyz",
        "/v2/it/single/blobs/sha256:" + "0" * 63,
        "/v2/it/single/blobs/md5:" + "0" * 32,
        "/v2/it/single/blobs/latest",
        "/v2/it/single/manifests/sha256:ABC",
        "/v2/it/single/referrers/sha256:nothex",
    ],
)
async def test_invalid_digest_is_400_digest_invalid(
    path: str, gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    """A malformed or unsupported digest is 400 DIGEST_INVALID before anything goes upstream."""
    answer = await fetch(http, "GET", f"{gateway.url}{path}")

    assert_oci_error(answer, 400, "DIGEST_INVALID")


@pytest.mark.parametrize("ns", ["gcr.io", "127.0.0.1:1", "docker.io"])
async def test_ns_naming_no_configured_upstream_is_404_name_unknown(
    ns: str, gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    """`?ns=` naming an upstream that is not configured is 404 NAME_UNKNOWN."""
    answer = await fetch(http, "GET", f"{gateway.url}/v2/it/single/manifests/v1", params={"ns": ns})

    assert_oci_error(answer, 404, "NAME_UNKNOWN")


async def test_unreachable_upstream_is_502_unavailable(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    """An upstream whose port is closed makes the gateway answer 502 UNAVAILABLE."""
    closed = f"127.0.0.1:{free_port()}"
    gateway = start_gateway(gateway_config({closed: upstream(f"http://{closed}")}, default=closed))

    for method in ("GET", "HEAD"):
        answer = await fetch(http, method, f"{gateway.url}/v2/it/single/manifests/v1")
        if method == "GET":
            assert_oci_error(answer, 502, "UNAVAILABLE")
        else:
            assert answer.status == 502
    blob = await fetch(http, "GET", f"{gateway.url}/v2/it/single/blobs/{DIGEST}")
    assert_oci_error(blob, 502, "UNAVAILABLE")


async def test_unknown_path_under_v2_is_an_envelope(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    """A /v2/ path that is no registry endpoint is answered with the envelope, not HTML."""
    answer = await fetch(http, "GET", f"{gateway.url}/v2/it/single/nothing/here")

    assert 400 <= answer.status < 500
    assert_oci_error(answer, answer.status, answer.json()["errors"][0]["code"])


async def test_insane_request_id_is_replaced(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    """An over-long caller X-Request-ID is replaced by a generated one."""
    answer = await fetch(http, "GET", f"{gateway.url}/v2/", headers={"X-Request-ID": "x" * 200})

    assert answer.status == 200
    assert answer.headers["X-Request-ID"] != "x" * 200
    assert 0 < len(answer.headers["X-Request-ID"]) <= 128


@pytest.mark.parametrize("credentials", ["none", "wrong"])
async def test_upstream_refusal_is_403_denied_without_the_upstream_challenge(
    credentials: str,
    registry_htpasswd: Registry,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    """An upstream 401 the gateway cannot fix becomes 403 DENIED; its realm never leaks."""
    extra = {} if credentials == "none" else {
        "credentials": {"username": registry_htpasswd.username, "password": "not-the-password"}
    }  # fmt: skip
    gateway = start_gateway(registry_gateway_config(registry_htpasswd, **extra))
    answer = await fetch(http, "GET", f"{gateway.url}/v2/any/thing/manifests/latest")
    error = assert_oci_error(answer, 403, "DENIED")
    assert "WWW-Authenticate" not in answer.headers
    detail = error["detail"]
    assert detail["upstream"] == registry_htpasswd.host and detail["upstream_status"] == 401
    assert detail["upstream_errors"][0]["code"] == "UNAUTHORIZED"
