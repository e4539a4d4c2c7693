"""Settings: the YAML config file parsed once into frozen dataclasses.

``load_settings`` is the only reader of the config file and of ``os.environ``. Every problem is
reported as ``<key.path>: <problem>``, all of them at once, so a user fixes a file in one pass.
Secret values are wrapped in :class:`~gateway.secret.Secret` and never appear in ``repr``.

This module reads the top level, the small sections (listen, public_url, tls, log, metrics,
timeouts, routing, limits) and the checks that span sections; the rest is one concept each:

- ``model``: the frozen dataclasses and Docker Hub's names (``normalize_registry``)
- ``reader``: the key-path problem collector and the ``host:port`` and URL parsers
- ``upstreams``: the registries behind the gateway and their credentials
- ``vault``: the Vault/OpenBao connection and login
- ``clients``: caller authentication, groups, tenants and access rules
- ``cache``: the content-addressed cache (store, size, freshness)

Every public name of the package is importable from ``gateway.settings``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .cache import CacheSettings, parse_cache
from .clients import parse_clients
from .cluster import ClusterSettings, RateLimitSettings, RedisSettings, parse_cluster
from .model import (
    DOCKER_HUB,
    REGISTRY_ALIASES,
    AccessRule,
    BasicCredentialsSpec,
    ClientsSettings,
    CredentialsSpec,
    DockerConfigCredentialsSpec,
    LimitsSettings,
    LoginLimitSettings,
    LogSettings,
    MetricsSettings,
    RoutingSettings,
    SecretSource,
    Settings,
    StreamingSettings,
    Timeouts,
    TLSSettings,
    TokenCredentialsSpec,
    TokenServiceSettings,
    UpstreamSettings,
    VaultAuthSettings,
    VaultCredentialsSpec,
    VaultSettings,
    normalize_registry,
)
from .reader import Reader, parse_http_url, parse_listen
from .sizes import parse_byte_size
from .upstreams import is_registry_key, parse_upstream
from .vault import K8S_TOKEN_FILE, parse_vault

__all__ = [
    "CONFIG_ENV",
    "DOCKER_HUB",
    "K8S_TOKEN_FILE",
    "REGISTRY_ALIASES",
    "AccessRule",
    "BasicCredentialsSpec",
    "CacheSettings",
    "ClientsSettings",
    "ClusterSettings",
    "ConfigError",
    "CredentialsSpec",
    "DockerConfigCredentialsSpec",
    "LimitsSettings",
    "LogSettings",
    "LoginLimitSettings",
    "MetricsSettings",
    "RateLimitSettings",
    "RedisSettings",
    "RoutingSettings",
    "SecretSource",
    "Settings",
    "TLSSettings",
    "Timeouts",
    "TokenCredentialsSpec",
    "TokenServiceSettings",
    "UpstreamSettings",
    "VaultAuthSettings",
    "VaultCredentialsSpec",
    "VaultSettings",
    "load_settings",
    "normalize_registry",
    "parse_listen",
    "parse_settings",
]

CONFIG_ENV = "REGISTRY_GATEWAY_CONFIG"


class ConfigError(Exception):
    """The config is unusable; ``problems`` holds one ``key.path: problem`` line each."""

    def __init__(self, problems: list[str], unchecked: tuple[str, ...] = ()) -> None:
        self.problems = problems
        self.unchecked = unchecked  # structure-only mode: env vars and files not looked at
        super().__init__("\n".join(problems))


_TOP_KEYS = {
    "listen", "public_url", "tls", "log", "metrics", "timeouts", "shutdown_grace",
    "routing", "upstreams", "vault", "clients", "limits", "streaming", "cache", "cluster",
}  # fmt: skip


def parse_settings(
    data: Any,
    *,
    environ: Mapping[str, str],
    base_dir: Path,
    source: str,
    structure_only: bool = False,
) -> Settings:
    """Validate a parsed YAML document; raise ConfigError listing every problem.

    ``structure_only`` checks everything but the environment variables and files the config
    names (``Settings.unchecked`` lists them); such settings are for reporting, not serving.
    """
    problems: list[str] = []
    reader = Reader(problems, environ, base_dir, structure_only=structure_only)
    if not isinstance(data, dict):
        raise ConfigError(["(top level): must be a mapping"])
    raw = reader.mapping(data, "", _TOP_KEYS)

    listen = parse_listen(raw.get("listen", "0.0.0.0:5000"), "listen", reader)
    public_url = None
    if raw.get("public_url") is not None:
        public_url = parse_http_url(raw["public_url"], "public_url", reader)

    tls = None
    if raw.get("tls") is not None:
        traw = reader.mapping(raw["tls"], "tls", {"cert_file", "key_file"})
        cert = reader.existing_file(traw, "cert_file", "tls")
        key = reader.existing_file(traw, "key_file", "tls")
        if cert is None or key is None:
            reader.fail("tls", "needs cert_file and key_file")
        else:
            tls = TLSSettings(cert, key)

    lraw = reader.mapping(raw.get("log"), "log", {"format", "level"})
    log = LogSettings(
        format=reader.choice(lraw, "format", "log", ("json", "console"), "json"),
        level=reader.choice(
            lraw, "level", "log", ("debug", "info", "warning", "error", "critical"), "info"
        ),
    )

    mraw = reader.mapping(raw.get("metrics"), "metrics", {"path", "listen"})
    metrics_path = reader.string(mraw, "path", "metrics", "/metrics") or "/metrics"
    if not metrics_path.startswith("/") or metrics_path.startswith("/v2"):
        reader.fail("metrics.path", "must start with / and not be under /v2")
    metrics_listen = None
    if mraw.get("listen") is not None:
        metrics_listen = parse_listen(mraw["listen"], "metrics.listen", reader)

    traw = reader.mapping(raw.get("timeouts"), "timeouts", {"connect", "read"})
    timeouts = Timeouts(
        connect=reader.number(traw, "connect", "timeouts", 10.0, minimum=0.001),
        read=reader.number(traw, "read", "timeouts", 60.0, minimum=0.001),
    )
    grace = reader.number(raw, "shutdown_grace", "", 30.0)

    upstreams: dict[str, UpstreamSettings] = {}
    uraw = raw.get("upstreams")
    if not isinstance(uraw, dict) or not uraw:
        reader.fail("upstreams", "must be a mapping with at least one upstream")
        uraw = {}
    for key, value in uraw.items():
        path = f"upstreams.{key}"
        if not isinstance(key, str) or not is_registry_key(key):
            reader.fail(path, "key must be a registry host name, optionally with :port")
            continue
        norm = normalize_registry(key)
        if norm in upstreams:
            reader.fail(path, f"duplicates upstream {norm!r}")
            continue
        upstream = parse_upstream(norm, value, path, reader)
        if upstream:
            upstreams[norm] = upstream

    # Upstream keys as written, so a default naming a broken upstream is not reported twice.
    named = {normalize_registry(k) for k in uraw if isinstance(k, str)}
    notes: list[str] = []
    rraw = reader.mapping(raw.get("routing"), "routing", {"default", "hosts"})
    if "default" not in rraw and DOCKER_HUB not in named:
        notes.append(
            "routing.default: not set and no docker.io upstream, so there is no default: "
            "a name without an upstream prefix (and no ?ns= or routing.hosts match) gets "
            "404 NAME_UNKNOWN"
        )
    default = rraw.get("default", DOCKER_HUB if DOCKER_HUB in named else None)
    if default is not None:
        if not isinstance(default, str):
            reader.fail("routing.default", "must be an upstream key or null")
            default = None
        else:
            default = normalize_registry(default)
            if default not in named:
                configured = ", ".join(sorted(named)) or "none"
                reader.fail(
                    "routing.default",
                    f"{default!r} is not a configured upstream (configured: {configured})",
                )
    hosts: dict[str, str] = {}
    hraw = rraw.get("hosts") or {}
    if not isinstance(hraw, dict):
        reader.fail("routing.hosts", "must be a mapping of host name to upstream key")
        hraw = {}
    for host, target in hraw.items():
        if not isinstance(target, str) or normalize_registry(target) not in upstreams:
            reader.fail(f"routing.hosts.{host}", f"{target!r} is not a configured upstream")
            continue
        hosts[str(host).lower()] = normalize_registry(target)

    vault = parse_vault(raw.get("vault"), reader)
    clients = parse_clients(raw.get("clients"), reader)
    for upstream in upstreams.values():
        creds = upstream.credentials
        if isinstance(creds, VaultCredentialsSpec):
            cpath = f"upstreams.{upstream.key}.credentials.vault"
            if raw.get("vault") is None:
                reader.fail(cpath, "needs the top-level vault section")
            if creds.templated and not clients.tenants:
                reader.fail(f"{cpath}.path", "uses {tenant} but clients.tenants defines none")
            elif creds.templated and clients.auth == "none":
                reader.fail(f"{cpath}.path", "uses {tenant} but clients.auth is none: "
                            "callers have no tenant")  # fmt: skip

    limits = _parse_limits(raw.get("limits"), reader)
    sraw = reader.mapping(raw.get("streaming"), "streaming", {"passthrough"})
    streaming = StreamingSettings(reader.boolean(sraw, "passthrough", "streaming", True))
    cache = parse_cache(raw.get("cache"), reader)
    cluster = parse_cluster(raw.get("cluster"), reader)
    if raw.get("vault") is None:
        if isinstance(cache.s3.credentials, dict) and "vault" in cache.s3.credentials:
            reader.fail("cache.s3.credentials.vault", "needs the top-level vault section")
        if cluster is not None and cluster.redis is not None and cluster.redis.password_vault:
            reader.fail("cluster.redis.vault", "needs the top-level vault section")

    if problems:
        raise ConfigError(problems, tuple(reader.unchecked))
    assert listen is not None
    return Settings(
        upstreams=upstreams,
        listen=listen,
        public_url=public_url,
        tls=tls,
        log=log,
        metrics=MetricsSettings(metrics_path, metrics_listen),
        timeouts=timeouts,
        shutdown_grace=grace,
        routing=RoutingSettings(default, hosts),
        vault=vault,
        clients=clients,
        limits=limits,
        streaming=streaming,
        cache=cache,
        cluster=cluster,
        source=source,
        notes=tuple(notes),
        unchecked=tuple(reader.unchecked),
    )


def _parse_limits(data: Any, reader: Reader) -> LimitsSettings:
    raw = reader.mapping(
        data,
        "limits",
        {"max_connections", "max_line_size", "max_field_size", "max_headers", "keepalive_timeout",
         "max_manifest_size", "upload_session_ttl",
         "max_header_size", "header_timeout"},
    )  # fmt: skip
    return LimitsSettings(
        max_connections=reader.number(
            raw, "max_connections", "limits", 1024, minimum=1, integer=True
        ),
        max_line_size=reader.number(
            raw, "max_line_size", "limits", 8190, minimum=256, integer=True
        ),
        max_field_size=reader.number(
            raw, "max_field_size", "limits", 8190, minimum=256, integer=True
        ),
        max_headers=reader.number(raw, "max_headers", "limits", 128, minimum=8, integer=True),
        # Also how long a connection may stay silent before its first request: never 0.
        keepalive_timeout=reader.number(raw, "keepalive_timeout", "limits", 75.0, minimum=1),
        max_manifest_size=parse_byte_size(
            raw, "max_manifest_size", "limits", 4 << 20, reader, minimum=1024
        ),
        upload_session_ttl=reader.number(raw, "upload_session_ttl", "limits", 3600.0, minimum=1),
        max_header_size=reader.number(
            raw, "max_header_size", "limits", 32768, minimum=1024, integer=True
        ),
        header_timeout=reader.number(raw, "header_timeout", "limits", 10.0, minimum=1),
    )


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    read_text: Callable[[Path], str] = lambda p: p.read_text(encoding="utf-8"),
    structure_only: bool = False,
) -> Settings:
    """``--config PATH``, else ``$REGISTRY_GATEWAY_CONFIG``, else the embedded default.

    Problems come in file order: sorted by the line of the key each one names.
    """
    import os

    env = dict(os.environ) if environ is None else environ
    chosen = path or env.get(CONFIG_ENV)
    if chosen:
        file = Path(chosen).expanduser()
        try:
            text = read_text(file)
        except OSError as exc:
            raise ConfigError([f"(file) {file}: cannot read: {exc.strerror or exc}"]) from exc
        source, base_dir = str(file), file.resolve().parent
    else:
        text = resources.files("gateway").joinpath("default.yaml").read_text(encoding="utf-8")
        source, base_dir = "<embedded default>", Path.cwd()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([f"(file) {source}: {where}: {problem}"]) from exc
    try:
        return parse_settings(
            data, environ=env, base_dir=base_dir, source=source, structure_only=structure_only
        )
    except ConfigError as exc:
        raise ConfigError(in_file_order(exc.problems, key_lines(text)), exc.unchecked) from None


def key_lines(text: str) -> dict[str, int]:
    """Each mapping key's path (as problems name it, ``upstreams.gcr.io.url``) → its line."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    child = f"{path}.{key.value}" if path else str(key.value)
                    lines.setdefault(child, key.start_mark.line + 1)
                    walk(value, child)

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


def in_file_order(problems: list[str], lines: Mapping[str, int]) -> list[str]:
    """Problems sorted by the line of the longest key path they start with (stable)."""

    def line_of(problem: str) -> int:
        path = problem.split(": ", 1)[0]
        while path:
            if path in lines:
                return lines[path]
            path = path.rpartition(".")[0]
        return 0

    return sorted(problems, key=line_of)
