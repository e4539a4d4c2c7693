"""The ``clients`` section: how callers authenticate to the gateway and what they may pull.

Client auth is none, basic (htpasswd) or token (the gateway's own token service). Only the
paths of the htpasswd file and the token signing key are recorded here (and that they exist):
the access services read them once, and report an unusable one as a config error
(access/files.py). Groups name sets of users for access rules;
tenants put each user in at most one tenant, which ``{tenant}`` Vault paths are filled with.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .cluster import parse_rate_limits
from .model import AccessRule, ClientsSettings, LoginLimitSettings, TokenServiceSettings
from .reader import Reader, join_key

_CLIENT_KEYS = {
    "auth", "htpasswd", "groups", "tenants", "token", "access", "login_limit", "trusted_proxies",
    "rate_limits",
}  # fmt: skip


def parse_clients(data: Any, reader: Reader) -> ClientsSettings:
    if data is None:
        return ClientsSettings()
    path = "clients"
    raw = reader.mapping(data, path, _CLIENT_KEYS)
    auth = reader.choice(raw, "auth", path, ("none", "basic", "token"), "none")
    htpasswd = reader.existing_file(raw, "htpasswd", path)
    if auth != "none" and htpasswd is None:
        reader.fail("clients.htpasswd", f"is required with auth: {auth}")
    groups = _parse_member_map(raw.get("groups"), "clients.groups", reader)
    tenants = _parse_member_map(raw.get("tenants"), "clients.tenants", reader)
    seen: dict[str, str] = {}
    for tenant, members in tenants.items():
        for user in members:
            if user in seen:
                reader.fail(
                    f"clients.tenants.{tenant}",
                    f"user {user!r} is already in tenant {seen[user]!r}",
                )
            seen[user] = tenant
    traw = reader.mapping(
        raw.get("token"), "clients.token", {"service", "issuer", "ttl", "key_file", "refresh_ttl"}
    )
    token = TokenServiceSettings(
        service=reader.string(traw, "service", "clients.token", "registry-gateway"),
        issuer=reader.string(traw, "issuer", "clients.token", "registry-gateway"),
        ttl=reader.number(traw, "ttl", "clients.token", 300, minimum=60, integer=True),
        key_file=reader.existing_file(traw, "key_file", "clients.token"),
        refresh_ttl=reader.number(
            traw, "refresh_ttl", "clients.token", 7 * 24 * 3600, minimum=60, integer=True
        ),
    )
    lraw = reader.mapping(raw.get("login_limit"), "clients.login_limit", {"failures", "window"})
    login_limit = LoginLimitSettings(
        failures=reader.number(lraw, "failures", "clients.login_limit", 10, minimum=1,
                               integer=True),
        window=reader.number(lraw, "window", "clients.login_limit", 60.0, minimum=1),
    )  # fmt: skip
    proxies = reader.string_list(raw, "trusted_proxies", path)
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            reader.fail("clients.trusted_proxies", f"{proxy!r} is not an IP address or CIDR")
    rules: list[AccessRule] = []
    access = raw.get("access") or []
    if not isinstance(access, list):
        reader.fail("clients.access", "must be a list of rules")
        access = []
    for index, item in enumerate(access):
        rpath = f"clients.access[{index}]"
        rule = reader.mapping(item, rpath, {"users", "repositories", "actions"})
        users = reader.string_list(rule, "users", rpath)
        repos = reader.string_list(rule, "repositories", rpath)
        actions = reader.string_list(rule, "actions", rpath) or ("pull",)
        if not users:
            reader.fail(join_key(rpath, "users"), "is required")
        if not repos:
            reader.fail(join_key(rpath, "repositories"), "is required")
        for user in users:
            if user.startswith("group:") and user[6:] not in groups:
                reader.fail(join_key(rpath, "users"), f"unknown group {user[6:]!r}")
        for action in actions:
            if action not in ("pull", "push", "delete", "*"):
                reader.fail(join_key(rpath, "actions"), f"unknown action {action!r}")
        rules.append(AccessRule(users, repos, actions))
    return ClientsSettings(
        auth=auth, htpasswd=htpasswd, groups=groups, tenants=tenants, token=token,
        access=tuple(rules), login_limit=login_limit, trusted_proxies=proxies,
        rate_limits=parse_rate_limits(raw.get("rate_limits"), reader),
    )  # fmt: skip


def _parse_member_map(data: Any, path: str, reader: Reader) -> dict[str, tuple[str, ...]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        reader.fail(path, "must be a mapping of name to a list of users")
        return {}
    return {str(k): reader.string_list(data, k, path) for k in data}
