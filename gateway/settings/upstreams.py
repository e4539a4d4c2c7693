"""The ``upstreams`` section: each registry behind the gateway and its credentials.

An upstream key is a registry host name, optionally with ``:port``; an upstream has an http(s)
URL, its redirect and TLS choices, the token realms it may send credentials to, and at most one
credentials form: username+password, token, a Docker config file, or a Vault KV path.
Passwords and tokens come inline, from an environment variable or from a file (re-read live).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..secret import Secret
from .model import (
    BasicCredentialsSpec,
    CredentialsSpec,
    DockerConfigCredentialsSpec,
    SecretSource,
    TokenCredentialsSpec,
    UpstreamSettings,
    VaultCredentialsSpec,
)
from .reader import Reader, is_host, join_key, parse_http_url


def is_registry_key(key: str) -> bool:
    """A registry host name, optionally with ``:port``: how an upstream key is written."""
    host, _, port = key.partition(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return False
    return bool(host) and is_host(host)


def _parse_secret_source(
    data: Mapping[str, Any], name: str, path: str, reader: Reader
) -> SecretSource | None:
    """Exactly one of ``name``, ``name_env`` and ``name_file``."""
    given = [k for k in (name, f"{name}_env", f"{name}_file") if data.get(k) is not None]
    if len(given) != 1:
        reader.fail(path, f"needs exactly one of {name}, {name}_env, {name}_file")
        return None
    key = given[0]
    if key == name:
        value = reader.string(data, name, path)
        return SecretSource(value=Secret(value)) if value else None
    if key.endswith("_env"):
        secret = reader.env_secret(data, key, path)
        return SecretSource(value=secret) if secret else None
    file = reader.existing_file(data, key, path)
    return SecretSource(file=file) if file else None


_CREDENTIAL_KEYS = {
    "username", "password", "password_env", "password_file",
    "token", "token_env", "token_file", "docker_config", "vault",
}  # fmt: skip


def _parse_credentials(data: Any, path: str, reader: Reader) -> CredentialsSpec | None:
    if data is None:
        return None
    raw = reader.mapping(data, path, _CREDENTIAL_KEYS)
    forms = []
    if "username" in raw or any(k.startswith("password") for k in raw):
        forms.append("username/password")
    if any(k.startswith("token") for k in raw):
        forms.append("token")
    if "docker_config" in raw:
        forms.append("docker_config")
    if "vault" in raw:
        forms.append("vault")
    if len(forms) != 1:
        reader.fail(
            path,
            "needs exactly one form: username+password, token, docker_config or vault"
            + (f" (found {', '.join(forms)})" if forms else ""),
        )
        return None
    form = forms[0]
    if form == "username/password":
        username = reader.string(raw, "username", path)
        if not username:
            reader.fail(join_key(path, "username"), "is required with a password")
        password = _parse_secret_source(raw, "password", path, reader)
        if username and password:
            return BasicCredentialsSpec(username, password)
        return None
    if form == "token":
        token = _parse_secret_source(raw, "token", path, reader)
        return TokenCredentialsSpec(token) if token else None
    if form == "docker_config":
        file = reader.existing_file(raw, "docker_config", path)
        return DockerConfigCredentialsSpec(file) if file else None
    vpath = join_key(path, "vault")
    vault = reader.mapping(raw["vault"], vpath, {"path", "mount"})
    secret_path = reader.string(vault, "path", vpath)
    if not secret_path:
        reader.fail(join_key(vpath, "path"), "is required")
        return None
    rest = secret_path.replace("{tenant}", "")
    if "{" in rest or "}" in rest:
        reader.fail(join_key(vpath, "path"), "only {tenant} may be substituted")
        return None
    return VaultCredentialsSpec(secret_path.strip("/"), reader.string(vault, "mount", vpath))


_UPSTREAM_KEYS = {
    "url", "redirects", "tls_verify", "ca_file", "token_realms", "credentials", "probe_interval",
    "push", "cache", "max_concurrency",
}  # fmt: skip
MIN_PROBE_INTERVAL = 1.0  # seconds; a probe is a /v2/ round trip and maybe a token fetch


def parse_upstream(key: str, data: Any, path: str, reader: Reader) -> UpstreamSettings | None:
    raw = reader.mapping(data, path, _UPSTREAM_KEYS)
    if data is None or "url" not in raw:
        reader.fail(join_key(path, "url"), "is required")
        return None
    url = parse_http_url(raw["url"], join_key(path, "url"), reader)
    redirects = reader.choice(raw, "redirects", path, ("follow", "pass"), "follow")
    tls_verify = reader.boolean(raw, "tls_verify", path, True)
    ca_file = reader.existing_file(raw, "ca_file", path)
    realms = reader.string_list(raw, "token_realms", path)
    for realm in realms:
        if "/" in realm or not realm:
            reader.fail(join_key(path, "token_realms"), f'{realm!r} must be "host" or "host:port"')
    credentials = _parse_credentials(raw.get("credentials"), join_key(path, "credentials"), reader)
    probe_interval = None
    if raw.get("probe_interval") is not None:
        probe_interval = float(
            reader.number(raw, "probe_interval", path, 60.0, minimum=MIN_PROBE_INTERVAL)
        )
    push = reader.boolean(raw, "push", path, False)
    cache = reader.boolean(raw, "cache", path, True)
    max_concurrency = None
    if raw.get("max_concurrency") is not None:
        max_concurrency = reader.number(raw, "max_concurrency", path, 1, minimum=1, integer=True)
    if url is None:
        return None
    return UpstreamSettings(
        key=key,
        url=url,
        redirects=redirects,
        tls_verify=tls_verify,
        ca_file=ca_file,
        token_realms=tuple(r.lower() for r in realms),
        credentials=credentials,
        probe_interval=probe_interval,
        push=push,
        cache=cache,
        max_concurrency=max_concurrency,
    )
