"""GET and POST /token against the app in-process (distribution auth/token.md, auth/oauth.md)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.keys import ACCESS_KEY
from tests.access.conftest import PASSWORDS, json_of, metric
from tests.access.identities import basic, write_htpasswd

Client = TestClient[web.Request, web.Application]
Start = Callable[..., Awaitable[Client]]
SERVICE = "registry-gateway"
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# gateway.keys uses str request keys; aiohttp ≥ 3.14 warns once per key (and ignores the
# warning itself outside pytest). Under filterwarnings=error that would be a 500 in-process.


def access_of(token: str) -> list[dict[str, Any]]:
    body: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return sorted(body["access"], key=lambda e: e["name"])


def pull(name: str) -> dict[str, Any]:
    return {"type": "repository", "name": name, "actions": ["pull"]}


async def post(client: Client, **form: str) -> tuple[int, dict[str, Any]]:
    response = await client.post("/token", data={"service": SERVICE, "client_id": "t", **form})
    return response.status, await json_of(response)


async def test_get_response_has_token_access_token_expires_in_and_issued_at(
    gateway_client: Start,
) -> None:
    """token.md: token and access_token equal, expires_in ≥ 60, issued_at RFC 3339 UTC."""
    client = await gateway_client()
    response = await client.get("/token", params={"service": SERVICE})
    body = await json_of(response)
    assert response.status == 200
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300 and RFC3339_UTC.fullmatch(body["issued_at"])
    assert response.headers["Cache-Control"] == "no-store"


async def test_anonymous_get_grants_only_what_anonymous_may_pull(gateway_client: Start) -> None:
    """Without credentials: sub "", access = requested ∩ the anonymous rules; never an error."""
    client = await gateway_client()
    scopes = ["repository:alpine:pull", "repository:gcr.io/team-a/app:pull"]
    response = await client.get("/token", params=[("scope", s) for s in scopes])
    token = (await json_of(response))["token"]
    assert response.status == 200
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == ""
    assert access_of(token) == [pull("alpine")]


async def test_basic_get_takes_repeated_and_space_separated_scopes(gateway_client: Start) -> None:
    """Scopes from several `scope` parameters and from one space-separated value all count."""
    client = await gateway_client()
    params = [
        ("service", SERVICE),
        ("scope", "repository:gcr.io/team-a/app:pull,push"),
        ("scope", "repository:team-a/x:pull repository:gcr.io/team-b/app:pull"),
    ]
    response = await client.get(
        "/token", params=params, headers={"Authorization": basic("alice", "alice-pw")}
    )
    token = (await json_of(response))["token"]
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "alice"
    assert access_of(token) == [pull("gcr.io/team-a/app"), pull("team-a/x")]


async def test_get_ignores_account_client_id_and_offline_token(gateway_client: Start) -> None:
    """Docker's login adds account/client_id/offline_token: accepted, and no refresh_token."""
    client = await gateway_client()
    params = {
        "service": SERVICE,
        "scope": "repository:gcr.io/team-a/app:pull",
        "account": "somebody-else",
        "client_id": "docker",
        "offline_token": "true",
    }
    response = await client.get(
        "/token", params=params, headers={"Authorization": basic("alice", "alice-pw")}
    )
    body = await json_of(response)
    assert response.status == 200 and "refresh_token" not in body
    assert jwt.decode(body["token"], options={"verify_signature": False})["sub"] == "alice"


async def test_get_with_wrong_password_is_401_with_a_basic_challenge(gateway_client: Start) -> None:
    """token.md: a failed authentication to the token server is 401."""
    client = await gateway_client()
    for header in (basic("alice", "nope"), basic("nobody", "x"), "Basic !!!", "Bearer abc"):
        response = await client.get("/token", headers={"Authorization": header})
        assert response.status == 401, header
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert (await json_of(response))["errors"][0]["code"] == "UNAUTHORIZED"
    assert await metric(client, method="basic", result="invalid") == 4


async def test_get_for_another_service_is_400(gateway_client: Start) -> None:
    """Tokens are only ever for this gateway's service; a different one is a client error."""
    client = await gateway_client()
    response = await client.get("/token", params={"service": "registry.docker.io"})
    assert response.status == 400


async def test_post_password_grant(gateway_client: Start) -> None:
    """oauth.md: access_token, scope (the granted one), expires_in; no refresh_token unasked."""
    client = await gateway_client()
    status, body = await post(
        client,
        grant_type="password",
        username="carol",
        password="carol-pw",
        scope="repository:gcr.io/team-b/app:pull repository:gcr.io/team-a/app:pull",
    )
    assert status == 200
    assert body["scope"] == "repository:gcr.io/team-b/app:pull"
    assert body["access_token"] == body["token"] and body["expires_in"] >= 60
    assert "refresh_token" not in body and RFC3339_UTC.fullmatch(body["issued_at"])
    assert access_of(body["access_token"]) == [pull("gcr.io/team-b/app")]
    assert await metric(client, method="basic", result="granted") == 1


async def test_post_offline_returns_a_refresh_token_that_refreshes(gateway_client: Start) -> None:
    """access_type=offline: a refresh token; grant_type=refresh_token then issues new tokens."""
    client = await gateway_client()
    _, first = await post(
        client, grant_type="password", username="alice", password="alice-pw", access_type="offline"
    )
    refresh = first["refresh_token"]
    assert refresh != first["access_token"] and first["scope"] == ""
    status, body = await post(
        client,
        grant_type="refresh_token",
        refresh_token=refresh,
        scope="repository:gcr.io/team-a/app:pull",
    )
    assert status == 200 and body["scope"] == "repository:gcr.io/team-a/app:pull"
    assert jwt.decode(body["token"], options={"verify_signature": False})["sub"] == "alice"
    assert await metric(client, method="token", result="granted") == 1


async def test_refresh_token_is_revoked_when_the_password_changes(
    gateway_client: Start, auth_dir: Any
) -> None:
    """The refresh token is bound to the htpasswd entry: a new password voids it."""
    client = await gateway_client()
    _, first = await post(
        client, grant_type="password", username="bob", password="bob-pw", access_type="offline"
    )
    write_htpasswd(auth_dir / "htpasswd", {**PASSWORDS, "bob": "bob-new"})
    assert await client.app[ACCESS_KEY].users.refresh()  # type: ignore[union-attr]
    status, body = await post(
        client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 400 and body["error"] == "invalid_grant"
    assert "revoked" in body["error_description"]


async def test_refresh_token_is_revoked_when_the_user_is_removed(
    gateway_client: Start, auth_dir: Any
) -> None:
    """Removing the user from htpasswd voids their refresh tokens."""
    client = await gateway_client()
    _, first = await post(
        client, grant_type="password", username="bob", password="bob-pw", access_type="offline"
    )
    write_htpasswd(auth_dir / "htpasswd", {k: v for k, v in PASSWORDS.items() if k != "bob"})
    assert await client.app[ACCESS_KEY].users.refresh()  # type: ignore[union-attr]
    status, _ = await post(client, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert status == 400


async def test_tokens_of_one_kind_are_refused_as_the_other(gateway_client: Start) -> None:
    """An access token is no refresh token, and a refresh token opens no /v2/ door."""
    client = await gateway_client()
    _, first = await post(
        client, grant_type="password", username="alice", password="alice-pw", access_type="offline"
    )
    status, body = await post(client, grant_type="refresh_token", refresh_token=first["token"])
    assert status == 400 and "wrong token type" in body["error_description"]
    response = await client.get(
        "/v2/gcr.io/team-a/app/manifests/v1",
        headers={"Authorization": f"Bearer {first['refresh_token']}"},
    )
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_post_rejects_malformed_requests(gateway_client: Start) -> None:
    """OAuth2 errors: unsupported grant, missing fields, wrong password, non-form body."""
    client = await gateway_client()
    cases = [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "password", "username": "alice"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "password", "username": "alice", "password": "x"}, "invalid_grant"),
        ({"grant_type": "refresh_token", "refresh_token": "not-a-jwt"}, "invalid_grant"),
        ({"grant_type": "password", "service": "other"}, "invalid_request"),
    ]
    for form, error in cases:
        status, body = await post(client, **form)
        assert (status, body["error"]) == (400, error), form
    response = await client.post("/token", json={"grant_type": "password"})
    assert response.status == 400


async def test_failed_logins_are_limited_per_address(gateway_client: Start) -> None:
    """After `failures` misses: 429 TOOMANYREQUESTS + Retry-After, even for the right password."""
    client = await gateway_client(login_limit={"failures": 3, "window": 60})
    wrong = {"Authorization": basic("alice", "guess")}
    for _ in range(2):
        assert (await client.get("/token", headers=wrong)).status == 401
    status, _ = await post(client, grant_type="password", username="alice", password="guess")
    assert status == 400  # the third failure, through the POST flow
    for headers in (wrong, {"Authorization": basic("alice", "alice-pw")}):
        response = await client.get("/token", headers=headers)
        assert response.status == 429
        assert 55 <= int(response.headers["Retry-After"]) <= 60
        assert (await json_of(response))["errors"][0]["code"] == "TOOMANYREQUESTS"
    response = await client.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": "alice-pw"},
    )
    assert response.status == 429 and "Retry-After" in response.headers
    # Anonymous token requests carry no password and are not limited.
    assert (await client.get("/token")).status == 200


async def test_token_route_exists_only_in_token_mode(gateway_client: Start) -> None:
    """With auth: basic there is no token service."""
    client = await gateway_client(auth="basic")
    assert (await client.get("/token")).status == 404
