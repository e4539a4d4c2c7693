"""The example configurations, and the client snippets pointing Docker, containerd, podman at us."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "config"
CLIENTS = CONFIG / "clients"

UPSTREAM_KEYS = {
    "url", "redirects", "tls_verify", "ca_file", "token_realms", "credentials", "cache",
}  # fmt: skip
TOP_LEVEL_KEYS = {
    "cache",
    "limits",
    "listen",
    "public_url",
    "tls",
    "log",
    "metrics",
    "timeouts",
    "shutdown_grace",
    "routing",
    "upstreams",
    "vault",
    "clients",
}
# Keys that only appear in comments of the annotated example (optional sections and the
# alternative credential forms), as CONTRACT.md lists them.
COMMENTED_KEYS = [
    "cert_file",
    "key_file",
    "username",
    "password",
    "password_env",
    "password_file",
    "token",
    "token_env",
    "token_file",
    "docker_config",
    "vault",
    "path",
    "mount",
    "url",
    "namespace",
    "tls_verify",
    "ca_file",
    "kv_mount",
    "kv_version",
    "cache_ttl",
    "max_stale",
    "timeout",
    "auth",
    "method",
    "role_id",
    "role_id_file",
    "secret_id_env",
    "secret_id_file",
    "role",
    "jwt_file",
    "htpasswd",
    "groups",
    "tenants",
    "service",
    "issuer",
    "ttl",
    "access",
    "users",
    "repositories",
    "actions",
]


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _gateway_hosts() -> set[str]:
    """host:port of the gateway as the client snippets name it."""
    listen_port = _load(CONFIG / "gateway.yaml")["listen"].rpartition(":")[2]
    return {f"gateway:{listen_port}"}


def test_annotated_example_sets_every_top_level_and_upstream_key() -> None:
    """config/gateway.yaml sets every top-level key and every per-upstream key."""
    config = _load(CONFIG / "gateway.yaml")
    assert set(config) == TOP_LEVEL_KEYS
    assert set(config["upstreams"]["docker.io"]) == UPSTREAM_KEYS
    assert set(config["log"]) == {"format", "level"}
    assert set(config["metrics"]) == {"path", "listen"}
    assert set(config["timeouts"]) == {"connect", "read"}
    assert set(config["routing"]) == {"default", "hosts"}
    assert set(config["cache"]) == {
        "enabled", "store", "dir", "max_size", "tag_ttl", "max_stale", "negative_ttl",
        "fill_timeout",
    }  # fmt: skip
    assert set(config["limits"]) == {
        "max_connections", "max_line_size", "max_field_size", "max_headers", "keepalive_timeout"
    }  # fmt: skip
    assert config["vault"] is None and config["clients"] is None


@pytest.mark.parametrize("key", COMMENTED_KEYS)
def test_annotated_example_documents_optional_keys(key: str) -> None:
    """Keys of the optional sections and credential forms appear, commented, with a value."""
    text = (CONFIG / "gateway.yaml").read_text()
    assert re.search(rf"^\s*#.*[\s{{]{re.escape(key)}:(\s|$)", text, re.MULTILINE), key


def test_minimal_config_is_the_embedded_default() -> None:
    """config/minimal.yaml is an anonymous Docker Hub mirror on 0.0.0.0:5000 with no client auth."""
    config = _load(CONFIG / "minimal.yaml")
    assert config["listen"] == "0.0.0.0:5000"
    assert config["routing"] == {"default": "docker.io"}
    assert config["upstreams"] == {"docker.io": {"url": "https://registry-1.docker.io"}}
    assert config.get("clients") is None


def test_multi_upstream_config_covers_public_registries_and_credential_forms() -> None:
    """config/multi-upstream.yaml has the big public registries and several credential forms."""
    upstreams = _load(CONFIG / "multi-upstream.yaml")["upstreams"]
    assert {"docker.io", "gcr.io", "quay.io", "ghcr.io", "registry.k8s.io"} <= set(upstreams)
    assert upstreams["ghcr.io"]["credentials"] == {"token_file": "/run/secrets/ghcr-token"}
    forms = [set(u["credentials"]) for u in upstreams.values() if u.get("credentials")]
    assert {"username", "password_env"} in forms
    assert {"docker_config"} in forms
    for key, upstream in upstreams.items():
        assert upstream.keys() <= UPSTREAM_KEYS, key
        assert urlsplit(upstream["url"]).scheme == "https", key


def test_docker_daemon_snippet_lists_a_valid_mirror() -> None:
    """daemon.json's registry-mirrors are http(s) URLs to the gateway, no query or userinfo."""
    mirrors = json.loads((CLIENTS / "docker-daemon.json").read_text())["registry-mirrors"]
    assert mirrors
    for mirror in mirrors:
        url = urlsplit(mirror)
        assert url.scheme in {"http", "https"}
        assert not (url.query or url.fragment or url.username)
        assert url.netloc in _gateway_hosts()


@pytest.mark.parametrize(
    ("namespace", "server"),
    [("docker.io", "https://registry-1.docker.io"), ("gcr.io", "https://gcr.io")],
)
def test_containerd_hosts_toml_puts_the_gateway_first(namespace: str, server: str) -> None:
    """hosts.toml keeps the upstream as `server` and lists the gateway as a pull+resolve host."""
    hosts = tomllib.loads((CLIENTS / "containerd" / namespace / "hosts.toml").read_text())
    assert set(hosts) == {"server", "host"}
    assert hosts["server"] == server
    assert len(hosts["host"]) == 1
    [(host_url, host)] = hosts["host"].items()
    assert urlsplit(host_url).netloc in _gateway_hosts()
    assert urlsplit(host_url).path in {"", "/"}, "containerd appends /v2 itself"
    assert host == {"capabilities": ["pull", "resolve"]}
    # The gateway routes on ?ns=<namespace>, so the namespace must be a configured upstream.
    assert namespace in _load(CONFIG / "multi-upstream.yaml")["upstreams"]


def test_containerd_snippets_cover_only_known_namespaces() -> None:
    """Every containerd namespace directory holds exactly one hosts.toml."""
    directories = sorted(p.name for p in (CLIENTS / "containerd").iterdir())
    assert directories == ["docker.io", "gcr.io"]
    for name in directories:
        assert [p.name for p in (CLIENTS / "containerd" / name).iterdir()] == ["hosts.toml"]


def test_registries_conf_mirrors_use_the_path_prefix() -> None:
    """Each registries.conf mirror is <gateway>/<prefix>, for a prefix the gateway serves."""
    conf = tomllib.loads((CLIENTS / "registries.conf").read_text())
    upstreams = _load(CONFIG / "multi-upstream.yaml")["upstreams"]
    registries = conf["registry"]
    assert "docker.io" in {r["prefix"] for r in registries}
    for registry in registries:
        prefix = registry["prefix"]
        assert registry["location"] == prefix
        assert prefix in upstreams, f"{prefix}: the gateway has no such upstream"
        [mirror] = registry["mirror"]
        host, _, path = mirror["location"].partition("/")
        assert host in _gateway_hosts()
        assert path == prefix
        assert mirror["insecure"] is True, "the example gateway serves plain HTTP"


def test_registries_conf_explains_the_docker_library_namespace() -> None:
    """The docker.io `library/` expansion caveat is spelled out for users of narrower prefixes."""
    text = (CLIENTS / "registries.conf").read_text()
    assert "docker.io/library/alpine" in text
    assert 'prefix = "docker.io/library"' in text
