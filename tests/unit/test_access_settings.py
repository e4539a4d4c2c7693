"""The `clients:` section as load_settings validates it (key paths in every problem)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.access.files import load_files
from gateway.settings import ConfigError, LoginLimitSettings
from tests.access.identities import ec_key, make_settings, pem, rsa_key, write_htpasswd
from tests.components.ports import free_port

UPSTREAMS = {"docker.io": {"url": "https://registry-1.docker.io"}}
REPO = Path(__file__).resolve().parents[2]
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
    """clients.token.key_file: <path>: <why>, when the access services load it."""
    (base / "key.pem").write_bytes(key)
    settings = make_settings(
        base, UPSTREAMS, {"auth": "token", "htpasswd": "htpasswd", "token": {"key_file": "key.pem"}}
    )
    with pytest.raises(ConfigError) as caught:
        load_files(settings.clients)
    [found] = caught.value.problems
    assert found.startswith(f"clients.token.key_file: {base / 'key.pem'}: ")
    assert problem in found


def test_unusable_htpasswd_is_a_config_error_naming_the_line(base: Path) -> None:
    """A non-bcrypt htpasswd entry is clients.htpasswd: <path>: line N: ... at load."""
    (base / "htpasswd").write_text("alice:$apr1$abc$def\n")
    settings = make_settings(base, UPSTREAMS, {"auth": "basic", "htpasswd": "htpasswd"})
    with pytest.raises(ConfigError) as caught:
        load_files(settings.clients)
    [found] = caught.value.problems
    assert found.startswith(f"clients.htpasswd: {base / 'htpasswd'}: line 1:")
    assert "only bcrypt" in found


def test_files_are_read_once_by_the_services(base: Path) -> None:
    """Settings record paths only; load_files reads the users and the key it returns."""
    settings = make_settings(
        base, UPSTREAMS, {"auth": "token", "htpasswd": "htpasswd", "token": {"key_file": "ec.pem"}}
    )
    assert settings.clients.htpasswd == base / "htpasswd"
    files = load_files(settings.clients)
    assert files.users is not None and "alice" in files.users
    assert files.key is not None and not files.key.generated


def test_settings_import_nothing_from_access() -> None:
    """The settings layer stands alone: importing it loads no gateway.access module."""
    code = (
        "import sys, gateway.settings\n"
        "print(any(m.startswith('gateway.access') for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=REPO)  # fmt: skip
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_unusable_htpasswd_exits_2_from_the_cli(base: Path, command: str) -> None:
    """check-config and serve both exit 2 with the clients.htpasswd line, before listening."""
    (base / "htpasswd").write_text("alice:{SHA}abc\n")
    config = base / "gateway.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{free_port()}\n"
        "upstreams: {docker.io: {url: https://registry-1.docker.io}}\n"
        f"clients: {{auth: basic, htpasswd: {base / 'htpasswd'}}}\n"
    )
    argv = [config] if command == "check-config" else ["--config", config]
    result = subprocess.run([sys.executable, "-m", "gateway", command, *map(str, argv)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"clients.htpasswd: {base / 'htpasswd'}: line 1:" in result.stderr
    assert "Traceback" not in result.stderr


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
