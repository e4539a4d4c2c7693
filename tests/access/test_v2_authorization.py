"""The /v2/ door in token and basic mode: challenges, 401 vs 403 vs 429, forged tokens.

The app runs in-process; granted requests really reach the shared open docker-registry.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.access.signing import load_signing_key
from gateway.oci.challenge import find_challenge
from tests.access.conftest import AccessImage, json_of, metric
from tests.access.identities import (
    basic,
    claims,
    ec_key,
    hs256_with_public_key,
    pull,
    rsa_key,
    sign,
    tamper,
    unsigned,
)

Client = TestClient[web.Request, web.Application]
Start = Callable[..., Awaitable[Client]]
SERVICE = "registry-gateway"
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json"
# See test_token_endpoint: str request keys warn once per key under aiohttp ≥ 3.14.


def bearer_challenge(response: Any) -> dict[str, str]:
    challenge = find_challenge(response.headers.getall("WWW-Authenticate", []), "bearer")
    assert challenge is not None, response.headers.get("WWW-Authenticate")
    return challenge.params


async def token_for(client: Client, scope: str, user: str | None = None) -> str:
    """Ask the gateway's token service, as a client would after a challenge."""
    headers = {"Authorization": basic(user, f"{user}-pw")} if user else {}
    response = await client.get(
        "/token", params={"service": SERVICE, "scope": scope}, headers=headers
    )
    assert response.status == 200
    token: str = (await json_of(response))["token"]
    return token


async def get_manifest(client: Client, path: str, token: str | None = None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await client.get(path, headers={"Accept": MANIFEST_ACCEPT, **headers})


# --- token mode: challenges ----------------------------------------------------------------


async def test_base_endpoint_challenges_without_scope(gateway_client: Start) -> None:
    """/v2/ without a token: 401 UNAUTHORIZED, Bearer realm + service, no scope, no error."""
    client = await gateway_client()
    response = await client.get("/v2/")
    assert response.status == 401
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert (await json_of(response))["errors"][0]["code"] == "UNAUTHORIZED"
    params = bearer_challenge(response)
    assert params == {"realm": f"http://{client.host}:{client.port}/token", "service": SERVICE}


async def test_realm_honours_x_forwarded_proto_but_not_x_forwarded_host(
    gateway_client: Start,
) -> None:
    """Without public_url the realm is X-Forwarded-Proto (else our scheme) + the Host header."""
    client = await gateway_client()
    response = await client.get(
        "/v2/",
        headers={
            "Host": "mirror.example.com",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
        },
    )
    assert bearer_challenge(response)["realm"] == "https://mirror.example.com/token"
    response = await client.get("/v2/", headers={"Host": 'bad"host', "X-Forwarded-Proto": "gopher"})
    assert bearer_challenge(response)["realm"] == "http://localhost/token"


async def test_public_url_sets_the_realm(gateway_client: Start) -> None:
    """public_url wins over any request header."""
    client = await gateway_client(extra={"public_url": "https://registry.example.org"})
    response = await client.get("/v2/", headers={"X-Forwarded-Proto": "http"})
    assert bearer_challenge(response)["realm"] == "https://registry.example.org/token"


@pytest.mark.parametrize(
    ("path", "scope_name"),
    [
        ("/v2/gcr.io/team-a/app/manifests/v1", "gcr.io/team-a/app"),  # path prefix
        ("/v2/team-a/app/manifests/v1?ns=gcr.io", "team-a/app"),  # containerd's ns
        ("/v2/library/alpine/manifests/v1?ns=docker.io", "library/alpine"),
        ("/v2/alpine/manifests/v1", "alpine"),  # default upstream: no library/ added
        ("/v2/alpine/blobs/sha256:" + "0" * 64, "alpine"),
        ("/v2/gcr.io/team-a/app/tags/list", "gcr.io/team-a/app"),
    ],
)
async def test_challenge_scope_is_the_name_as_the_caller_wrote_it(
    gateway_client: Start, path: str, scope_name: str
) -> None:
    """scope="repository:<name from the path>:pull" for every endpoint and name form."""
    client = await gateway_client()
    response = await client.get(path)
    assert response.status == 401
    assert bearer_challenge(response)["scope"] == f"repository:{scope_name}:pull"


# --- token mode: the full dance ------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "path", "scope_name"),
    [
        (None, "/v2/alpine/manifests/v1", "alpine"),
        (None, "/v2/library/alpine/manifests/v1?ns=docker.io", "library/alpine"),
        ("alice", "/v2/gcr.io/team-a/app/manifests/v1", "gcr.io/team-a/app"),
        ("alice", "/v2/team-a/app/manifests/v1?ns=gcr.io", "team-a/app"),
        ("carol", "/v2/gcr.io/team-b/app/manifests/v1", "gcr.io/team-b/app"),
        ("dave", "/v2/gcr.io/team-b/app/manifests/v1", "gcr.io/team-b/app"),
    ],
)
async def test_challenge_then_token_then_pull(
    gateway_client: Start,
    access_image: AccessImage,
    user: str | None,
    path: str,
    scope_name: str,
) -> None:
    """401 → token for the challenged scope → 200 with the upstream's manifest."""
    client = await gateway_client()
    challenge = bearer_challenge(await get_manifest(client, path))
    token = await token_for(client, challenge["scope"], user)
    response = await get_manifest(client, path, token)
    assert response.status == 200, await response.text()
    assert response.headers["Docker-Content-Digest"] == access_image.manifest_digest
    blob = path.replace("manifests/v1", f"blobs/{access_image.blob_digests[-1]}")
    assert (await get_manifest(client, blob, token)).status == 200
    assert challenge["scope"] == f"repository:{scope_name}:pull"


async def test_a_token_works_until_the_name_leaves_its_scope(
    gateway_client: Start, access_image: AccessImage
) -> None:
    """A token for team-a/app does not open team-a/other: 401 insufficient_scope with the scope."""
    client = await gateway_client()
    token = await token_for(client, "repository:gcr.io/team-a/app:pull", "alice")
    response = await get_manifest(client, "/v2/gcr.io/team-a/other/manifests/v1", token)
    assert response.status == 401
    params = bearer_challenge(response)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "repository:gcr.io/team-a/other:pull"


async def test_authenticated_user_without_rights_gets_403_denied(gateway_client: Start) -> None:
    """Rules deny alice team-b: 403 DENIED (asking for another token would not help)."""
    client = await gateway_client()
    token = await token_for(client, "repository:gcr.io/team-b/app:pull", "alice")
    response = await get_manifest(client, "/v2/gcr.io/team-b/app/manifests/v1", token)
    assert response.status == 403
    assert (await json_of(response))["errors"][0]["code"] == "DENIED"
    assert "WWW-Authenticate" not in response.headers


async def test_anonymous_caller_without_rights_gets_401(gateway_client: Start) -> None:
    """An anonymous token where rules deny: 401 insufficient_scope, so the client can log in."""
    client = await gateway_client()
    token = await token_for(client, "repository:gcr.io/team-a/app:pull")
    response = await get_manifest(client, "/v2/gcr.io/team-a/app/manifests/v1", token)
    assert response.status == 401
    assert bearer_challenge(response)["error"] == "insufficient_scope"


async def test_rules_see_the_upstream_the_request_routes_to(gateway_client: Start) -> None:
    """A token for team-a/app (granted via gcr.io) does not open docker.io's team-a/app."""
    client = await gateway_client()
    token = await token_for(client, "repository:team-a/app:pull", "alice")
    allowed = await get_manifest(client, "/v2/team-a/app/manifests/v1?ns=gcr.io", token)
    denied = await get_manifest(client, "/v2/team-a/app/manifests/v1?ns=docker.io", token)
    assert (allowed.status, denied.status) == (200, 403)


async def test_base_endpoint_accepts_any_valid_token(gateway_client: Start) -> None:
    """/v2/ with a valid token, even an anonymous one without access: 200."""
    client = await gateway_client()
    response = await client.get(
        "/v2/", headers={"Authorization": f"Bearer {await token_for(client, '')}"}
    )
    assert response.status == 200


# --- token mode: forged and stale tokens ---------------------------------------------------


OTHER_EC = ec_key()


def signing_key(key_file: Path) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """The gateway's own key from the test's key file, and its kid."""
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return private, load_signing_key(key_file.read_bytes()).kid


def forged_tokens(key_file: Path) -> dict[str, str]:
    """Tokens for alice on gcr.io/team-a/app, each wrong in one way."""
    private, kid = signing_key(key_file)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    access = [pull("gcr.io/team-a/app")]
    good = claims("alice", access)
    now = time.time()
    other_scope = sign(claims("alice", [pull("gcr.io/team-a/x")]), private, kid)
    return {
        "tampered": tamper(other_scope, access=access),
        "re-signed": sign(good, OTHER_EC, kid),
        "alg-none": unsigned(good, kid),
        "hs256-public-key": hs256_with_public_key(good, public, kid),
        "rs256-other-key": sign(good, rsa_key(), kid, algorithm="RS256"),
        "expired": sign(claims("alice", access, now=now - 600), private, kid),
        "not-yet-valid": sign(claims("alice", access, now=now + 600), private, kid),
        "wrong-audience": sign({**good, "aud": "registry.docker.io"}, private, kid),
        "wrong-issuer": sign({**good, "iss": "auth.docker.io"}, private, kid),
        "garbage": "abc.def.ghi",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "tampered",
        "re-signed",
        "alg-none",
        "hs256-public-key",
        "rs256-other-key",
        "expired",
        "not-yet-valid",
        "wrong-audience",
        "wrong-issuer",
        "garbage",
    ],
)
async def test_forged_or_stale_tokens_get_invalid_token(
    gateway_client: Start, auth_dir: Path, kind: str
) -> None:
    """Every forgery: 401 with error="invalid_token" and the scope to ask for."""
    client = await gateway_client()
    token = forged_tokens(auth_dir / "signing.pem")[kind]
    response = await get_manifest(client, "/v2/gcr.io/team-a/app/manifests/v1", token)
    assert response.status == 401
    params = bearer_challenge(response)
    assert params["error"] == "invalid_token"
    assert params["scope"] == "repository:gcr.io/team-a/app:pull"
    assert await metric(client, method="token", result="invalid") == 1


async def test_a_correctly_signed_token_from_the_test_key_is_accepted(
    gateway_client: Start, auth_dir: Path, access_image: AccessImage
) -> None:
    """Control for the forgeries: the same construction, untampered, pulls."""
    client = await gateway_client()
    private, kid = signing_key(auth_dir / "signing.pem")
    token = sign(claims("alice", [pull("gcr.io/team-a/app")]), private, kid)
    response = await get_manifest(client, "/v2/gcr.io/team-a/app/manifests/v1", token)
    assert response.status == 200


async def test_decisions_are_counted(gateway_client: Start, access_image: AccessImage) -> None:
    """registry_gateway_client_auth_total{method="token"} by granted / denied / invalid."""
    client = await gateway_client()
    token = await token_for(client, "repository:gcr.io/team-a/app:pull", "alice")
    await get_manifest(client, "/v2/gcr.io/team-a/app/manifests/v1", token)  # granted
    await get_manifest(client, "/v2/gcr.io/team-b/app/manifests/v1", token)  # denied (403)
    await get_manifest(client, "/v2/gcr.io/team-a/app/manifests/v1")  # denied (no token)
    await get_manifest(client, "/v2/gcr.io/team-a/app/manifests/v1", "x.y.z")  # invalid
    assert await metric(client, method="token", result="granted") == 1
    assert await metric(client, method="token", result="denied") == 2
    assert await metric(client, method="token", result="invalid") == 1
    assert await metric(client, method="basic", result="granted") == 1  # the /token login


# --- basic mode ----------------------------------------------------------------------------


async def test_basic_mode_challenges_with_basic(gateway_client: Start) -> None:
    """/v2/ without credentials: 401 + `WWW-Authenticate: Basic realm=...` + the envelope."""
    client = await gateway_client(auth="basic")
    response = await client.get("/v2/")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="registry-gateway", charset="UTF-8"'
    assert (await json_of(response))["errors"][0]["code"] == "UNAUTHORIZED"
    ok = await client.get("/v2/", headers={"Authorization": basic("alice", "alice-pw")})
    assert ok.status == 200


async def test_basic_mode_authorizes_each_request(
    gateway_client: Start, access_image: AccessImage
) -> None:
    """Right password + rule: 200; no rule: 403; wrong password: 401; anonymous rule: 200."""
    client = await gateway_client(auth="basic")
    alice = basic("alice", "alice-pw")
    cases = [
        ("/v2/gcr.io/team-a/app/manifests/v1", alice, 200),
        ("/v2/team-a/app/manifests/v1?ns=gcr.io", alice, 200),
        ("/v2/gcr.io/team-b/app/manifests/v1", alice, 403),
        ("/v2/gcr.io/team-a/app/manifests/v1", basic("alice", "wrong"), 401),
        ("/v2/gcr.io/team-a/app/manifests/v1", "Bearer abc", 401),
        ("/v2/gcr.io/team-a/app/manifests/v1", None, 401),
        ("/v2/alpine/manifests/v1", None, 200),  # anonymous rule: no credentials needed
        # containers/image sends empty Basic credentials ("Og==" is ":") when it has none.
        ("/v2/alpine/manifests/v1", "Basic Og==", 200),
        ("/v2/gcr.io/team-a/app/manifests/v1", "Basic Og==", 401),
    ]
    for path, header, status in cases:
        headers = {"Authorization": header} if header else {}
        response = await get_manifest(client, path, **headers)
        assert response.status == status, (path, header)
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert await metric(client, method="basic", result="granted") == 4
    assert await metric(client, method="basic", result="denied") == 3
    assert await metric(client, method="basic", result="invalid") == 2


async def test_basic_mode_limits_failed_logins(gateway_client: Start) -> None:
    """After the limit: 429 TOOMANYREQUESTS with Retry-After, right password included."""
    client = await gateway_client(auth="basic", login_limit={"failures": 2, "window": 30})
    for _ in range(2):
        response = await client.get("/v2/", headers={"Authorization": basic("alice", "guess")})
        assert response.status == 401
    response = await client.get("/v2/", headers={"Authorization": basic("alice", "alice-pw")})
    assert response.status == 429
    assert (await json_of(response))["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert 25 <= int(response.headers["Retry-After"]) <= 30


async def test_user_without_tenant_is_denied_a_per_tenant_upstream(
    gateway_client: Start, auth_dir: Path
) -> None:
    """{tenant} vault path: dave (rule, no tenant) gets 403; alice (team-a) passes the door."""
    (auth_dir / "vault-token").write_text("root\n")
    client = await gateway_client(
        auth="basic",
        access=[{"users": ["*"], "repositories": ["*"], "actions": ["pull"]}],
        upstreams={
            "private.example": {
                "url": "http://127.0.0.1:1",
                "credentials": {"vault": {"path": "registries/{tenant}/private"}},
            }
        },
        extra={"vault": {"url": "http://127.0.0.1:1", "auth": {"token_file": "vault-token"}}},
    )
    path = "/v2/private.example/x/manifests/v1"
    dave = await get_manifest(client, path, Authorization=basic("dave", "dave-pw"))
    assert dave.status == 403
    assert (await json_of(dave))["errors"][0]["code"] == "DENIED"
    anonymous = await get_manifest(client, path)
    assert anonymous.status == 401
    alice = await get_manifest(client, path, Authorization=basic("alice", "alice-pw"))
    assert alice.status not in (401, 403)  # authorized; Vault on port 1 then fails it


async def test_unknown_ns_is_only_revealed_after_authentication(gateway_client: Start) -> None:
    """An unconfigured ns: 401 challenge without credentials, 404 NAME_UNKNOWN with them."""
    client = await gateway_client()
    anonymous = await get_manifest(client, "/v2/team-a/app/manifests/v1?ns=evil.example.com")
    assert anonymous.status == 401
    assert "scope" not in bearer_challenge(anonymous)
    token = await token_for(client, "repository:team-a/app:pull", "alice")
    known = await get_manifest(client, "/v2/team-a/app/manifests/v1?ns=evil.example.com", token)
    assert known.status == 404
    assert (await json_of(known))["errors"][0]["code"] == "NAME_UNKNOWN"
