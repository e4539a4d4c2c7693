"""The ``vault`` section: where Vault/OpenBao is, how the gateway logs in, how long secrets live.

Login methods are token, AppRole, Kubernetes and JWT; each accepts only its own keys. Values
named by ``*_env`` keys are read from the environment here, once; files (token, role and secret
ids, the service-account JWT) are only located here and are read by the Vault session at login.
Which upstreams take their credentials from Vault is said by their ``credentials.vault`` key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..secret import Secret
from .model import VaultAuthSettings, VaultSettings
from .reader import Reader, join_key, parse_http_url


def parse_vault(data: Any, reader: Reader) -> VaultSettings | None:
    if data is None:
        return None
    path = "vault"
    raw = reader.mapping(
        data,
        path,
        {
            "url", "namespace", "tls_verify", "ca_file", "kv_mount", "kv_version",
            "cache_ttl", "max_stale", "timeout", "check_interval", "auth",
        },
    )  # fmt: skip
    url = parse_http_url(raw.get("url"), "vault.url", reader)
    kv_version = raw.get("kv_version", 2)
    if kv_version not in (1, 2):
        reader.fail("vault.kv_version", "must be 1 or 2")
    auth = _parse_vault_auth(raw.get("auth"), reader)
    settings = VaultSettings(
        url=str(url) if url else "",
        auth=auth or VaultAuthSettings(),
        namespace=reader.string(raw, "namespace", path),
        tls_verify=reader.boolean(raw, "tls_verify", path, True),
        ca_file=reader.existing_file(raw, "ca_file", path),
        kv_mount=reader.string(raw, "kv_mount", path, "secret") or "secret",
        kv_version=kv_version if kv_version in (1, 2) else 2,
        cache_ttl=reader.number(raw, "cache_ttl", path, 300.0),
        max_stale=reader.number(raw, "max_stale", path, 3600.0),
        timeout=reader.number(raw, "timeout", path, 5.0, minimum=0.1),
        check_interval=reader.number(raw, "check_interval", path, 10.0, minimum=1),
    )
    return settings if url and auth else None


_VAULT_AUTH_KEYS = {
    "token": {"method", "token_env", "token_file"},
    "approle": {"method", "role_id", "role_id_file", "secret_id_env", "secret_id_file", "mount"},
    "kubernetes": {"method", "role", "jwt_file", "mount"},
    "jwt": {"method", "role", "jwt_file", "mount"},
}
K8S_TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _parse_vault_auth(data: Any, reader: Reader) -> VaultAuthSettings | None:
    path = "vault.auth"
    if not isinstance(data, dict):
        data = {"method": "token"} if data is None else data
    method = data.get("method", "token") if isinstance(data, dict) else None
    if method not in _VAULT_AUTH_KEYS:
        reader.fail(join_key(path, "method"), "must be one of token, approle, kubernetes, jwt")
        return None
    raw = reader.mapping(data, path, _VAULT_AUTH_KEYS[method])
    problems_before = len(reader.problems)
    if method == "token":
        token_file = reader.existing_file(raw, "token_file", path)
        token = None
        if token_file is None:
            token = reader.env_secret({"token_env": raw.get("token_env", "VAULT_TOKEN")},
                                      "token_env", path)  # fmt: skip
        auth = VaultAuthSettings(method="token", token=token, token_file=token_file)
    elif method == "approle":
        role_id_text = reader.string(raw, "role_id", path)
        role_id_file = reader.existing_file(raw, "role_id_file", path)
        if (role_id_text is None) == (role_id_file is None):
            reader.fail(path, "approle needs exactly one of role_id, role_id_file")
        secret_id = reader.env_secret(raw, "secret_id_env", path)
        secret_id_file = reader.existing_file(raw, "secret_id_file", path)
        if (secret_id is None) == (secret_id_file is None) and len(reader.problems) == (
            problems_before
        ):
            reader.fail(path, "approle needs exactly one of secret_id_env, secret_id_file")
        auth = VaultAuthSettings(
            method="approle",
            role_id=Secret(role_id_text) if role_id_text else None,
            role_id_file=role_id_file,
            secret_id=secret_id,
            secret_id_file=secret_id_file,
            mount=reader.string(raw, "mount", path, "approle"),
        )
    else:
        role = reader.string(raw, "role", path)
        if not role:
            reader.fail(join_key(path, "role"), f"is required for {method} auth")
        jwt_file = reader.path_value(raw, "jwt_file", path)
        if jwt_file is None:
            if method == "jwt":
                reader.fail(join_key(path, "jwt_file"), "is required for jwt auth")
            jwt_file = K8S_TOKEN_FILE
        auth = VaultAuthSettings(
            method=method, role=role, jwt_file=jwt_file,
            mount=reader.string(raw, "mount", path, method),
        )  # fmt: skip
    return auth if len(reader.problems) == problems_before else None
