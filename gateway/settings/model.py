"""The settings model: the frozen dataclasses one config file becomes, and Docker Hub's names.

Every section of the YAML file has its dataclass here, with the defaults that apply when the
section or key is left out; the parsers in this package build them and nothing else does.
Secret fields hold :class:`~gateway.secret.Secret`, so they never appear in a ``repr``.
Upstream keys are registry host names normalized by :func:`normalize_registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from yarl import URL

from ..secret import Secret
from .cache import CacheSettings
from .cluster import ClusterSettings, RateLimitSettings

DOCKER_HUB = "docker.io"
# Names clients use for Docker Hub (distribution/reference normalize.go).
REGISTRY_ALIASES = {"index.docker.io": DOCKER_HUB, "registry-1.docker.io": DOCKER_HUB}


def normalize_registry(host: str) -> str:
    """Map Docker Hub's alias host names to ``docker.io``; other names are lower-cased."""
    host = host.lower()
    return REGISTRY_ALIASES.get(host, host)


@dataclass(frozen=True)
class SecretSource:
    """Where a secret comes from: a literal (or env var, read at load) or a file re-read live."""

    value: Secret | None = None
    file: Path | None = None

    def describe(self) -> str:
        return f"file {self.file}" if self.file else "inline value"


@dataclass(frozen=True)
class BasicCredentialsSpec:
    username: str
    password: SecretSource


@dataclass(frozen=True)
class TokenCredentialsSpec:
    token: SecretSource


@dataclass(frozen=True)
class DockerConfigCredentialsSpec:
    path: Path


@dataclass(frozen=True)
class VaultCredentialsSpec:
    path: str
    mount: str | None = None

    @property
    def templated(self) -> bool:
        return "{tenant}" in self.path


CredentialsSpec = (
    BasicCredentialsSpec | TokenCredentialsSpec | DockerConfigCredentialsSpec | VaultCredentialsSpec
)


@dataclass(frozen=True)
class UpstreamSettings:
    key: str
    url: URL
    redirects: Literal["follow", "pass"] = "follow"
    tls_verify: bool = True
    ca_file: Path | None = None
    token_realms: tuple[str, ...] = ()
    credentials: CredentialsSpec | None = None
    probe_interval: float | None = None  # seconds between background probes; None: never
    push: bool = False  # relay the push API here (callers still need the push action)
    cache: bool = True  # false: never cache this upstream's content
    max_concurrency: int | None = None  # per replica: simultaneous requests to this upstream

    @property
    def host(self) -> str:
        """``host`` or ``host:port`` as it appears in a URL authority."""
        assert self.url.host is not None
        return self.url.authority if self.url.explicit_port else self.url.host


@dataclass(frozen=True)
class TLSSettings:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class LogSettings:
    format: Literal["json", "console"] = "json"
    level: str = "info"


@dataclass(frozen=True)
class MetricsSettings:
    path: str = "/metrics"
    listen: tuple[str, int] | None = None


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 60.0


@dataclass(frozen=True)
class RoutingSettings:
    default: str | None = DOCKER_HUB
    hosts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VaultAuthSettings:
    method: Literal["token", "approle", "kubernetes", "jwt"] = "token"
    token: Secret | None = None
    token_file: Path | None = None
    role_id: Secret | None = None
    role_id_file: Path | None = None
    secret_id: Secret | None = None
    secret_id_file: Path | None = None
    role: str | None = None
    jwt_file: Path | None = None
    mount: str | None = None


@dataclass(frozen=True)
class VaultSettings:
    url: str
    auth: VaultAuthSettings
    namespace: str | None = None
    tls_verify: bool = True
    ca_file: Path | None = None
    kv_mount: str = "secret"
    kv_version: int = 2
    cache_ttl: float = 300.0
    max_stale: float = 3600.0
    timeout: float = 5.0
    # Addition: seconds between the idle reachability checks (token lookup-self) behind /readyz.
    check_interval: float = 10.0


@dataclass(frozen=True)
class TokenServiceSettings:
    service: str = "registry-gateway"
    issuer: str = "registry-gateway"
    ttl: int = 300
    key_file: Path | None = None
    # Addition: lifetime of refresh tokens (OAuth2 POST flow with access_type=offline).
    refresh_ttl: int = 7 * 24 * 3600


@dataclass(frozen=True)
class AccessRule:
    users: tuple[str, ...]
    repositories: tuple[str, ...]
    actions: tuple[str, ...]


@dataclass(frozen=True)
class LoginLimitSettings:
    """Addition: failed logins allowed per client address within a sliding window."""

    failures: int = 10
    window: float = 60.0


@dataclass(frozen=True)
class ClientsSettings:
    auth: Literal["none", "basic", "token"] = "none"
    htpasswd: Path | None = None
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tenants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    token: TokenServiceSettings = field(default_factory=TokenServiceSettings)
    access: tuple[AccessRule, ...] = ()
    login_limit: LoginLimitSettings = field(default_factory=LoginLimitSettings)
    # Addition: proxies (CIDRs) whose X-Forwarded-For names the caller for rate limiting.
    trusted_proxies: tuple[str, ...] = ()
    rate_limits: RateLimitSettings | None = None


@dataclass(frozen=True)
class LimitsSettings:
    """What one caller may cost: open connections, request head sizes, idle keep-alive."""

    max_connections: int = 1024
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 128
    keepalive_timeout: float = 75.0
    max_header_size: int = 32768  # total bytes of one request head (line + fields): 431 past it
    header_timeout: float = 10.0  # seconds from a head's first byte to its end: 408 past it
    max_manifest_size: int = 4 << 20  # pushed manifests larger than this: 413
    upload_session_ttl: float = 3600.0  # seconds an upload id stays valid


@dataclass(frozen=True)
class StreamingSettings:
    """How bodies are relayed: ``passthrough`` lets large plain-TCP bodies go socket to socket."""

    passthrough: bool = True


@dataclass(frozen=True)
class Settings:
    upstreams: Mapping[str, UpstreamSettings]
    listen: tuple[str, int] = ("0.0.0.0", 5000)  # noqa: S104 - a mirror listens on all interfaces
    public_url: URL | None = None
    tls: TLSSettings | None = None
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    timeouts: Timeouts = field(default_factory=Timeouts)
    shutdown_grace: float = 30.0
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    vault: VaultSettings | None = None
    clients: ClientsSettings = field(default_factory=ClientsSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    streaming: StreamingSettings = field(default_factory=StreamingSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    cluster: ClusterSettings | None = None
    source: str = "<embedded default>"
    # What the file left to a default that a user may not expect (check-config prints them).
    notes: tuple[str, ...] = ()
    # Structure-only checks: the env vars and files that were not looked at.
    unchecked: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line for ``check-config`` and the start-up log."""
        host, port = self.listen
        return (
            f"{self.source}: listen {host}:{port}, upstreams "
            f"{', '.join(sorted(self.upstreams)) or '(none)'}, default "
            f"{self.routing.default or '(none)'}, client auth {self.clients.auth}, "
            f"vault {'on' if self.vault else 'off'}"
        )
