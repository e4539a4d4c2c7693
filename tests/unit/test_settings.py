"""Config loading: every CONTRACT key, key.path errors, secrets hidden, embedded default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import __version__
from gateway.settings import (
    BasicCredentialsSpec,
    ConfigError,
    DockerConfigCredentialsSpec,
    TokenCredentialsSpec,
    VaultCredentialsSpec,
    load_settings,
    parse_settings,
)


def parse(data: Any, environ: dict[str, str] | None = None, base: Path = Path(".")) -> Any:
    return parse_settings(data, environ=environ or {}, base_dir=base, source="test")


def problems(data: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(data, environ)
    return caught.value.problems


BASE = {"upstreams": {"docker.io": {"url": "https://registry-1.docker.io"}}}


def test_embedded_default_is_an_anonymous_docker_hub_mirror() -> None:
    """No --config and no env var: docker.io anonymous on 0.0.0.0:5000, client auth none."""
    settings = load_settings(None, environ={})
    assert settings.listen == ("0.0.0.0", 5000)
    assert list(settings.upstreams) == ["docker.io"]
    assert str(settings.upstreams["docker.io"].url) == "https://registry-1.docker.io"
    assert settings.upstreams["docker.io"].credentials is None
    assert settings.routing.default == "docker.io"
    assert settings.clients.auth == "none"


def test_env_var_selects_the_config(tmp_path: Path) -> None:
    """$REGISTRY_GATEWAY_CONFIG is used when --config is absent; --config wins over it."""
    env_file = tmp_path / "env.yaml"
    env_file.write_text('listen: "127.0.0.1:7000"\nupstreams: {docker.io: {url: https://x}}\n')
    arg_file = tmp_path / "arg.yaml"
    arg_file.write_text('listen: "127.0.0.1:7001"\nupstreams: {docker.io: {url: https://x}}\n')
    env = {"REGISTRY_GATEWAY_CONFIG": str(env_file)}
    assert load_settings(None, environ=env).listen == ("127.0.0.1", 7000)
    assert load_settings(arg_file, environ=env).listen == ("127.0.0.1", 7001)


def test_full_contract_config(tmp_path: Path) -> None:
    """Every core key of CONTRACT.md parses into typed settings."""
    token_file = tmp_path / "ghcr-token"
    token_file.write_text("ghp_x\n")
    cfg = tmp_path / "docker.json"
    cfg.write_text('{"auths": {}}')
    data = {
        "listen": "127.0.0.1:5050",
        "public_url": "https://mirror.example.com",
        "log": {"format": "console", "level": "debug"},
        "metrics": {"path": "/internal/metrics", "listen": "127.0.0.1:9100"},
        "timeouts": {"connect": 3, "read": 30},
        "shutdown_grace": 10,
        "routing": {"default": "index.docker.io", "hosts": {"GCR.mirror.example.com": "gcr.io"}},
        "upstreams": {
            "registry-1.docker.io": {"url": "https://registry-1.docker.io/", "redirects": "pass"},
            "gcr.io": {"url": "https://gcr.io", "token_realms": ["auth.example.com:8443"],
                       "credentials": {"username": "_json_key", "password_env": "GCR_PW"}},
            "ghcr.io": {"url": "https://ghcr.io", "credentials": {"token_file": str(token_file)}},
            "localhost:5000": {"url": "http://127.0.0.1:5000", "tls_verify": False,
                               "credentials": {"docker_config": str(cfg)}},
        },
    }  # fmt: skip
    settings = parse(data, {"GCR_PW": "pw"})
    assert settings.listen == ("127.0.0.1", 5050)
    assert str(settings.public_url) == "https://mirror.example.com"
    assert settings.metrics.listen == ("127.0.0.1", 9100)
    assert settings.timeouts.read == 30 and settings.shutdown_grace == 10
    assert settings.routing.default == "docker.io"  # alias normalised
    assert settings.routing.hosts == {"gcr.mirror.example.com": "gcr.io"}
    hub = settings.upstreams["docker.io"]
    assert hub.redirects == "pass" and str(hub.url) == "https://registry-1.docker.io"
    gcr = settings.upstreams["gcr.io"].credentials
    assert isinstance(gcr, BasicCredentialsSpec) and gcr.password.value is not None
    assert gcr.password.value.reveal() == "pw"
    assert isinstance(settings.upstreams["ghcr.io"].credentials, TokenCredentialsSpec)
    assert isinstance(settings.upstreams["localhost:5000"].credentials,
                      DockerConfigCredentialsSpec)  # fmt: skip
    assert settings.upstreams["gcr.io"].token_realms == ("auth.example.com:8443",)


def test_secrets_never_in_repr() -> None:
    """A password read from config or env is masked in every repr."""
    data = {"upstreams": {"r.io": {"url": "https://r.io",
            "credentials": {"username": "u", "password": "hunter2-secret"}}}}  # fmt: skip
    assert "hunter2" not in repr(parse(data))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"listen": "nope", **BASE}, 'listen: must be "host:port"'),
        ({"listen": "0.0.0.0:99999", **BASE}, "listen: port '99999' is not a number"),
        ({"upstreams": {}}, "upstreams: must be a mapping with at least one upstream"),
        ({"upstreams": {"gcr.io": {"url": "ftp://gcr.io"}}}, "upstreams.gcr.io.url: not an http"),
        ({"upstreams": {"gcr.io": {}}}, "upstreams.gcr.io.url: is required"),
        ({"upstreams": {"gcr.io": {"url": "https://u:p@gcr.io"}}},
         "upstreams.gcr.io.url: must not contain credentials"),
        ({"upstreams": {"gcr.io": {"url": "https://gcr.io", "redirects": "maybe"}}},
         "upstreams.gcr.io.redirects: must be one of follow, pass"),
        ({"upstreams": {"gcr.io": {"url": "https://gcr.io", "colour": 1}}},
         "upstreams.gcr.io.colour: unknown key"),
        ({"upstreams": {"gcr.io": {"url": "https://gcr.io",
                                   "credentials": {"username": "u", "token": "t"}}}},
         "upstreams.gcr.io.credentials: needs exactly one form"),
        ({"upstreams": {"gcr.io": {"url": "https://gcr.io",
                                   "credentials": {"username": "u", "password_env": "NOPE"}}}},
         "upstreams.gcr.io.credentials.password_env: environment variable NOPE is not set"),
        ({"upstreams": {"gcr.io": {"url": "https://gcr.io",
                                   "credentials": {"token_file": "/nonexistent/t"}}}},
         "upstreams.gcr.io.credentials.token_file: file not found"),
        ({"upstreams": {"gcr.io": {"url": "https://gcr.io",
                                   "credentials": {"vault": {"path": "a"}}}}},
         "upstreams.gcr.io.credentials.vault: needs the top-level vault section"),
        ({**BASE, "routing": {"default": "quay.io"}},
         "routing.default: 'quay.io' is not a configured upstream"),
        ({**BASE, "routing": {"hosts": {"m.example": "quay.io"}}},
         "routing.hosts.m.example: 'quay.io' is not a configured upstream"),
        ({**BASE, "timeouts": {"read": "slow"}}, "timeouts.read: must be a number"),
        ({**BASE, "log": {"format": "xml"}}, "log.format: must be one of json, console"),
        ({**BASE, "metrics": {"path": "/v2/metrics"}}, "metrics.path: must start with /"),
        ({**BASE, "surprise": 1}, "surprise: unknown key"),
        ({"upstreams": {"bad host!": {"url": "https://x"}}},
         "upstreams.bad host!: key must be a registry host name"),
        ({"upstreams": {"docker.io": {"url": "https://a"}, "index.docker.io": {"url": "https://b"}}},
         "upstreams.index.docker.io: duplicates upstream 'docker.io'"),
    ],
)  # fmt: skip
def test_errors_name_the_key_path(data: Any, expected: str) -> None:
    """Each problem is reported as key.path: problem."""
    found = problems(data)
    assert any(p.startswith(expected) for p in found), found


def test_all_problems_reported_at_once() -> None:
    """A file with several mistakes lists every one, not just the first."""
    found = problems({"listen": "x", "log": {"format": "xml"}, "upstreams": {"a.io": {}}})
    assert len(found) >= 3


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip


def test_cli_version() -> None:
    """--version prints the package version."""
    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_cli_check_config_ok_and_errors(tmp_path: Path) -> None:
    """check-config: exit 0 with a one-line summary, or exit 2 with key.path lines on stderr."""
    good = tmp_path / "good.yaml"
    good.write_text('upstreams: {docker.io: {url: "https://registry-1.docker.io"}}\n')
    ok = run_cli("check-config", str(good))
    assert ok.returncode == 0 and len(ok.stdout.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text('listen: "x"\nupstreams: {gcr.io: {url: "ftp://x"}}\n')
    failed = run_cli("check-config", str(bad))
    assert failed.returncode == 2
    assert failed.stderr.splitlines() == [
        'listen: must be "host:port"',
        "upstreams.gcr.io.url: not an http(s) URL",
    ]
    assert "Traceback" not in failed.stderr


def test_cli_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    """Broken YAML and unreadable files are one clear line each, exit 2."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("upstreams: [\n")
    result = run_cli("check-config", str(broken))
    assert result.returncode == 2 and "line" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("check-config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    """serve exits 2 with the same messages and never starts a half-working server."""
    bad = tmp_path / "bad.yaml"
    bad.write_text('listen: "127.0.0.1:1"\nupstreams: {gcr.io: {url: "ftp://x"}}\n')
    result = run_cli("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "upstreams.gcr.io.url: not an http(s) URL" in result.stderr


def test_vault_credentials_parse_with_vault_section() -> None:
    """credentials.vault with a vault section parses; {tenant} needs clients.tenants."""
    data = {
        "vault": {"url": "http://127.0.0.1:8200", "auth": {"method": "token"}},
        "upstreams": {"gcr.io": {"url": "https://gcr.io",
                                 "credentials": {"vault": {"path": "registries/gcr"}}}},
    }  # fmt: skip
    settings = parse(data, {"VAULT_TOKEN": "t"})
    spec = settings.upstreams["gcr.io"].credentials
    assert isinstance(spec, VaultCredentialsSpec) and spec.path == "registries/gcr"
    data["upstreams"]["gcr.io"]["credentials"]["vault"]["path"] = "registries/{tenant}/gcr"
    assert any("uses {tenant}" in p for p in problems(data, {"VAULT_TOKEN": "t"}))


def test_probe_interval_parses_and_defaults_to_none() -> None:
    """probe_interval is seconds per upstream; left out, the upstream is never probed."""
    data = {"upstreams": {"docker.io": {"url": "https://r.example", "probe_interval": 30}}}
    assert parse(data).upstreams["docker.io"].probe_interval == 30.0
    assert parse(BASE).upstreams["docker.io"].probe_interval is None


@pytest.mark.parametrize(
    ("value", "problem"), [(0.5, "must be at least 1"), ("often", "must be a number")]
)
def test_probe_interval_rejects_bad_values(value: Any, problem: str) -> None:
    """A probe more often than once a second, or not a number, is a config error."""
    data = {"upstreams": {"docker.io": {"url": "https://r.example", "probe_interval": value}}}
    assert problems(data) == [f"upstreams.docker.io.probe_interval: {problem}"]


def test_vault_check_interval_defaults_to_10_and_has_a_floor() -> None:
    """vault.check_interval: 10 s unless set; below 1 s is a config error."""
    vault = {"url": "http://127.0.0.1:8200", "auth": {"method": "token"}}
    data = {**BASE, "vault": vault}
    assert parse(data, {"VAULT_TOKEN": "t"}).vault.check_interval == 10
    data["vault"] = {**vault, "check_interval": 0.1}
    assert problems(data, {"VAULT_TOKEN": "t"}) == ["vault.check_interval: must be at least 1"]
