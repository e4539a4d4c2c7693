"""The `clients:` section as load_settings validates it (key paths in every problem)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.settings import ConfigError, LoginLimitSettings
from tests.access.identities import ec_key, make_settings, pem, rsa_key, write_htpasswd

UPSTREAMS = {"docker.io": {"url": "https://registry-1.docker.io"}}
TENANT_VAULT = {"vault": {"path": "registries/{tenant}/gcr.io"}}


@pytest.fixture
def base(tmp_path: Path) -> Path:
    write_htpasswd(tmp_path / "htpasswd", {"alice": "a"})
    (tmp_path / "ec.pem").write_bytes(pem(ec_key()))
    return tmp_path


def problems(base: Path, clients: dict[str, Any], **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        make_settings(base, {**UPSTREAMS, **extra.pop("upstreams", {})}, clients, **extra)
    return caught.value.problems


def test_full_token_section_parses(base: Path) -> None:
    """Every documented key, plus the additions login_limit, trusted_proxies, refresh_ttl."""
    settings = make_settings(
        base,
        UPSTREAMS,
        {
            "auth": "token",
            "htpasswd": "htpasswd",
            "groups": {"ci": ["alice"]},
            "tenants": {"team-a": ["alice"]},
            "token": {
                "service": "svc",
                "issuer": "iss",
                "ttl": 120,
                "key_file": "ec.pem",
                "refresh_ttl": 600,
            },
            "access": [{"users": ["group:ci"], "repositories": ["*"], "actions": ["pull"]}],
            "login_limit": {"failures": 5, "window": 30},
            "trusted_proxies": ["10.0.0.0/8", "::1"],
        },
    )
    clients = settings.clients
    assert clients.token.key_file == base / "ec.pem" and clients.token.refresh_ttl == 600
    assert clients.login_limit == LoginLimitSettings(5, 30)
    assert clients.trusted_proxies == ("10.0.0.0/8", "::1")


def test_defaults(base: Path) -> None:
    """10 failures a minute; refresh tokens live a week; no proxies trusted."""
    clients = make_settings(base, UPSTREAMS, {"auth": "basic", "htpasswd": "htpasswd"}).clients
    assert clients.login_limit == LoginLimitSettings(10, 60.0)
    assert clients.token.refresh_ttl == 7 * 24 * 3600 and clients.trusted_proxies == ()


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (pem(ec_key(ec.SECP384R1())), "use P-256"),
        (pem(rsa_key(1024)), "use at least 2048"),
        (b"hello", "not a PEM private key"),
    ],
)
def test_unusable_key_file_is_a_config_error(base: Path, key: bytes, problem: str) -> None:
    """clients.token.key_file: <path>: <why>."""
    (base / "key.pem").write_bytes(key)
    found = problems(
        base, {"auth": "token", "htpasswd": "htpasswd", "token": {"key_file": "key.pem"}}
    )
    assert len(found) == 1
    assert found[0].startswith(f"clients.token.key_file: {base / 'key.pem'}: ")
    assert problem in found[0]


@pytest.mark.parametrize(
    ("clients", "expected"),
    [
        ({"auth": "token"}, "clients.htpasswd: is required with auth: token"),
        (
            {"auth": "basic", "htpasswd": "htpasswd", "trusted_proxies": ["10.0.0.0/33"]},
            "clients.trusted_proxies: '10.0.0.0/33' is not an IP address or CIDR",
        ),
        (
            {"auth": "basic", "htpasswd": "htpasswd", "login_limit": {"failures": 0}},
            "clients.login_limit.failures: must be at least 1",
        ),
        (
            {"auth": "basic", "htpasswd": "htpasswd", "login_limit": {"burst": 1}},
            "clients.login_limit.burst: unknown key",
        ),
        (
            {"auth": "token", "htpasswd": "htpasswd", "token": {"refresh_ttl": 5}},
            "clients.token.refresh_ttl: must be at least 60",
        ),
        (
            {"auth": "token", "htpasswd": "htpasswd", "token": {"ttl": 30}},
            "clients.token.ttl: must be at least 60",
        ),
    ],
)
def test_problems_name_the_key(base: Path, clients: dict[str, Any], expected: str) -> None:
    """Each mistake is reported at its key path."""
    assert problems(base, clients) == [expected]


def test_tenant_template_needs_client_auth(base: Path) -> None:
    """{tenant} in a vault path with auth: none can never resolve: a config error."""
    found = problems(
        base,
        {"auth": "none", "tenants": {"team-a": ["alice"]}},
        upstreams={"gcr.io": {"url": "https://gcr.io", "credentials": TENANT_VAULT}},
        vault={"url": "http://127.0.0.1:8200", "auth": {"token_file": "htpasswd"}},
    )
    assert found == [
        "upstreams.gcr.io.credentials.vault.path: uses {tenant} but clients.auth is none: "
        "callers have no tenant"
    ]
