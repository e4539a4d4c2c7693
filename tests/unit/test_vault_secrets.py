"""Vault secrets: the formats a KV secret may hold, their preference order, tenant paths."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.credentials.base import CredentialsError
from gateway.credentials.vault import Location, credentials_from_secret, secret_location
from gateway.settings import UpstreamSettings, VaultCredentialsSpec, parse_settings

WHERE = Location("secret", "registries/ghcr.io")


def upstream(key: str = "ghcr.io", url: str = "https://ghcr.io") -> UpstreamSettings:
    settings = parse_settings(
        {"upstreams": {key: {"url": url}}}, environ={}, base_dir=Path("."), source="test"
    )
    return settings.upstreams[key]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def dockerconfig(host: str, user: str, password: str) -> str:
    return json.dumps({"auths": {host: {"auth": b64(f"{user}:{password}")}}})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"username": "robot", "password": "pw"}, ("robot", "pw", None)),
        ({"token": "tok"}, (None, None, "tok")),
        ({"auth": b64("robot:p:w")}, ("robot", "p:w", None)),
        ({".dockerconfigjson": dockerconfig("ghcr.io", "robot", "pw")}, ("robot", "pw", None)),
        ({".dockerconfigjson": dockerconfig("https://ghcr.io/v1/", "r", "x")}, ("r", "x", None)),
        # Preference: username+password, then token, then auth, then .dockerconfigjson.
        ({"username": "u", "password": "p", "token": "t", "auth": b64("a:b")}, ("u", "p", None)),
        ({"token": "t", "auth": b64("a:b")}, (None, None, "t")),
        (
            {"auth": b64("a:b"), ".dockerconfigjson": dockerconfig("ghcr.io", "c", "d")},
            ("a", "b", None),
        ),
        # An incomplete pair does not shadow the next format.
        ({"username": "u", "token": "t"}, (None, None, "t")),
    ],
)
def test_secret_formats_in_preference_order(
    data: dict[str, Any], expected: tuple[str | None, str | None, str | None]
) -> None:
    """Each format yields its credentials; the first usable one in CONTRACT order wins."""
    creds = credentials_from_secret(data, upstream(), WHERE)
    password = creds.password.reveal() if creds.password else None
    token = creds.token.reveal() if creds.token else None
    assert (creds.username, password, token) == expected
    assert creds.source == "vault"


def test_dockerconfigjson_may_arrive_as_an_object() -> None:
    """A KV secret written as JSON may hold the Docker config as a nested object."""
    config = json.loads(dockerconfig("localhost:5000", "robot", "pw"))
    creds = credentials_from_secret(
        {".dockerconfigjson": config}, upstream("localhost:5000", "http://localhost:5000"), WHERE
    )
    assert creds.username == "robot"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "holds none of username+password, token, auth, .dockerconfigjson"),
        ({"username": "robot"}, "holds none of"),
        ({"password": "hunter2-secret"}, "holds none of"),
        ({"auth": "not base64!"}, "auth is not base64 of user:password"),
        ({"auth": b64("no-colon-hunter2-secret")}, "auth is not base64 of user:password"),
        ({".dockerconfigjson": "{not json hunter2-secret"}, "is not a JSON object"),
        (
            {".dockerconfigjson": dockerconfig("quay.io", "r", "hunter2-secret")},
            "has no usable entry for ghcr.io",
        ),
    ],
)
def test_unusable_secret_is_a_502_naming_the_path_without_values(
    data: dict[str, Any], problem: str
) -> None:
    """A malformed secret is a CredentialsError (502) naming the path, never a value."""
    with pytest.raises(CredentialsError) as caught:
        credentials_from_secret(data, upstream(), WHERE)
    message = str(caught.value)
    assert problem in message and "secret/registries/ghcr.io" in message
    assert caught.value.status == 502
    assert "hunter2" not in message and "bm8tY29sb24" not in message


def test_credentials_repr_hides_the_secret() -> None:
    """The credentials built from a secret never show the password in repr."""
    creds = credentials_from_secret({"username": "robot", "password": "hunter2"}, upstream(), WHERE)
    assert "hunter2" not in repr(creds)


@pytest.mark.parametrize(
    ("spec", "tenant", "expected"),
    [
        (VaultCredentialsSpec("registries/ghcr.io"), None, ("secret", "registries/ghcr.io")),
        (VaultCredentialsSpec("registries/ghcr.io", "kv"), "a", ("kv", "registries/ghcr.io")),
        (
            VaultCredentialsSpec("teams/{tenant}/ghcr.io"),
            "team-a",
            ("secret", "teams/team-a/ghcr.io"),
        ),
        (VaultCredentialsSpec("{tenant}/x/{tenant}", "/kv2/"), "b.c", ("kv2", "b.c/x/b.c")),
    ],
)
def test_secret_location_substitutes_the_tenant(
    spec: VaultCredentialsSpec, tenant: str | None, expected: tuple[str, str]
) -> None:
    """The mount defaults to vault.kv_mount; {tenant} becomes the caller's tenant."""
    assert secret_location(spec, tenant, "secret") == expected


def test_templated_path_without_tenant_is_a_502() -> None:
    """A {tenant} path for a request without a tenant fails clearly instead of guessing."""
    with pytest.raises(CredentialsError, match="needs the caller's tenant") as caught:
        secret_location(VaultCredentialsSpec("teams/{tenant}/x"), None, "secret")
    assert caught.value.status == 502


@pytest.mark.parametrize("tenant", ["..", "a/b", "../x", "", "a..b", " a"])
def test_tenant_cannot_leave_its_path_segment(tenant: str) -> None:
    """A tenant name that would climb or split the path is refused."""
    with pytest.raises(CredentialsError):
        secret_location(VaultCredentialsSpec("teams/{tenant}/x"), tenant, "secret")
