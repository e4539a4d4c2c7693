"""Settings: the YAML config file parsed once into frozen dataclasses.

``load_settings`` is the only reader of the config file and of ``os.environ``. Every problem is
reported as ``<key.path>: <problem>``, all of them at once, so a user fixes a file in one pass.
Secret values are wrapped in :class:`~gateway.secret.Secret` and never appear in ``repr``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from yarl import URL

from .access.htpasswd import HtpasswdError, read_htpasswd
from .access.signing import SigningKeyError, load_signing_key
from .secret import Secret

DOCKER_HUB = "docker.io"
# Names clients use for Docker Hub (distribution/reference normalize.go).
REGISTRY_ALIASES = {"index.docker.io": DOCKER_HUB, "registry-1.docker.io": DOCKER_HUB}
CONFIG_ENV = "REGISTRY_GATEWAY_CONFIG"


def normalize_registry(host: str) -> str:
    """Map Docker Hub's alias host names to ``docker.io``; other names are lower-cased."""
    host = host.lower()
    return REGISTRY_ALIASES.get(host, host)


class ConfigError(Exception):
    """The config is unusable; ``problems`` holds one ``key.path: problem`` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# --- dataclasses ---------------------------------------------------------------------------


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


@dataclass(frozen=True)
class LimitsSettings:
    """What one caller may cost: open connections, request head sizes, idle keep-alive."""

    max_connections: int = 1024
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 128
    keepalive_timeout: float = 75.0


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
    source: str = "<embedded default>"

    def summary(self) -> str:
        """One line for ``check-config`` and the start-up log."""
        host, port = self.listen
        return (
            f"{self.source}: listen {host}:{port}, upstreams "
            f"{', '.join(sorted(self.upstreams)) or '(none)'}, default "
            f"{self.routing.default or '(none)'}, client auth {self.clients.auth}, "
            f"vault {'on' if self.vault else 'off'}"
        )


# --- parsing -------------------------------------------------------------------------------


class _Reader:
    """Walks a mapping with a key path, collecting problems instead of raising at the first."""

    def __init__(self, problems: list[str], environ: Mapping[str, str], base_dir: Path) -> None:
        self.problems = problems
        self.environ = environ
        self.base_dir = base_dir

    def fail(self, path: str, problem: str) -> None:
        self.problems.append(f"{path}: {problem}")

    def mapping(self, data: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(path, "must be a mapping")
            return {}
        for key in data:
            if not isinstance(key, str):
                self.fail(path, f"key {key!r} must be a string")
            elif key not in allowed:
                self.fail(_join(path, key), "unknown key")
        return {k: v for k, v in data.items() if isinstance(k, str) and k in allowed}

    def string(self, data: Mapping[str, Any], key: str, path: str, default: Any = None) -> Any:
        value = data.get(key, default)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        self.fail(_join(path, key), "must be a string")
        return default

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if isinstance(value, bool):
            return value
        self.fail(_join(path, key), "must be true or false")
        return default

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        minimum: float = 0,
        integer: bool = False,
    ) -> Any:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(_join(path, key), "must be a number")
            return default
        if integer and not isinstance(value, int):
            self.fail(_join(path, key), "must be a whole number")
            return default
        if value < minimum:
            self.fail(_join(path, key), f"must be at least {minimum:g}")
            return default
        return value

    def choice(
        self, data: Mapping[str, Any], key: str, path: str, options: tuple[str, ...], default: str
    ) -> Any:
        value = data.get(key, default)
        if value not in options:
            self.fail(_join(path, key), f"must be one of {', '.join(options)}")
            return default
        return value

    def path_value(self, data: Mapping[str, Any], key: str, path: str) -> Path | None:
        value = self.string(data, key, path)
        if value is None:
            return None
        resolved = Path(value).expanduser()
        if not resolved.is_absolute():
            resolved = self.base_dir / resolved
        return resolved

    def existing_file(self, data: Mapping[str, Any], key: str, path: str) -> Path | None:
        resolved = self.path_value(data, key, path)
        if resolved is not None and not resolved.is_file():
            self.fail(_join(path, key), f"file not found: {resolved}")
        return resolved

    def env_secret(self, data: Mapping[str, Any], key: str, path: str) -> Secret | None:
        name = self.string(data, key, path)
        if name is None:
            return None
        value = self.environ.get(name)
        if not value:
            self.fail(_join(path, key), f"environment variable {name} is not set")
            return None
        return Secret(value)

    def string_list(self, data: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(_join(path, key), "must be a list of strings")
            return ()
        return tuple(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_listen(value: Any, path: str, reader: _Reader) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` for IPv6) into a tuple."""
    if not isinstance(value, str) or ":" not in value:
        reader.fail(path, 'must be "host:port"')
        return None
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        reader.fail(path, f"port {port_text!r} is not a number from 1 to 65535")
        return None
    if host and not _is_host(host):
        reader.fail(path, f"host {host!r} is not a host name or IP address")
        return None
    return host or "0.0.0.0", int(port_text)  # noqa: S104


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return all(part and part.replace("-", "").isalnum() for part in host.split("."))


def _parse_http_url(value: Any, path: str, reader: _Reader) -> URL | None:
    if not isinstance(value, str) or not value:
        reader.fail(path, "must be an http(s) URL")
        return None
    try:
        url = URL(value)
    except (ValueError, TypeError):
        reader.fail(path, "not an http(s) URL")
        return None
    if url.scheme not in ("http", "https") or not url.host:
        reader.fail(path, "not an http(s) URL")
        return None
    if url.user or url.password:
        reader.fail(path, "must not contain credentials; use the credentials key")
        return None
    if url.query_string or url.fragment:
        reader.fail(path, "must not have a query or fragment")
        return None
    return url.with_path(url.path.rstrip("/"))


def _parse_secret_source(
    data: Mapping[str, Any], name: str, path: str, reader: _Reader
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


def _parse_credentials(data: Any, path: str, reader: _Reader) -> CredentialsSpec | None:
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
            reader.fail(_join(path, "username"), "is required with a password")
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
    vpath = _join(path, "vault")
    vault = reader.mapping(raw["vault"], vpath, {"path", "mount"})
    secret_path = reader.string(vault, "path", vpath)
    if not secret_path:
        reader.fail(_join(vpath, "path"), "is required")
        return None
    rest = secret_path.replace("{tenant}", "")
    if "{" in rest or "}" in rest:
        reader.fail(_join(vpath, "path"), "only {tenant} may be substituted")
        return None
    return VaultCredentialsSpec(secret_path.strip("/"), reader.string(vault, "mount", vpath))


_UPSTREAM_KEYS = {"url", "redirects", "tls_verify", "ca_file", "token_realms", "credentials"}


def _parse_upstream(key: str, data: Any, path: str, reader: _Reader) -> UpstreamSettings | None:
    raw = reader.mapping(data, path, _UPSTREAM_KEYS)
    if data is None or "url" not in raw:
        reader.fail(_join(path, "url"), "is required")
        return None
    url = _parse_http_url(raw["url"], _join(path, "url"), reader)
    redirects = reader.choice(raw, "redirects", path, ("follow", "pass"), "follow")
    tls_verify = reader.boolean(raw, "tls_verify", path, True)
    ca_file = reader.existing_file(raw, "ca_file", path)
    realms = reader.string_list(raw, "token_realms", path)
    for realm in realms:
        if "/" in realm or not realm:
            reader.fail(_join(path, "token_realms"), f'{realm!r} must be "host" or "host:port"')
    credentials = _parse_credentials(raw.get("credentials"), _join(path, "credentials"), reader)
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
    )


def _parse_vault(data: Any, reader: _Reader) -> VaultSettings | None:
    if data is None:
        return None
    path = "vault"
    raw = reader.mapping(
        data,
        path,
        {
            "url", "namespace", "tls_verify", "ca_file", "kv_mount", "kv_version",
            "cache_ttl", "max_stale", "timeout", "auth",
        },
    )  # fmt: skip
    url = _parse_http_url(raw.get("url"), "vault.url", reader)
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
    )
    return settings if url and auth else None


_VAULT_AUTH_KEYS = {
    "token": {"method", "token_env", "token_file"},
    "approle": {"method", "role_id", "role_id_file", "secret_id_env", "secret_id_file", "mount"},
    "kubernetes": {"method", "role", "jwt_file", "mount"},
    "jwt": {"method", "role", "jwt_file", "mount"},
}
K8S_TOKEN_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _parse_vault_auth(data: Any, reader: _Reader) -> VaultAuthSettings | None:
    path = "vault.auth"
    if not isinstance(data, dict):
        data = {"method": "token"} if data is None else data
    method = data.get("method", "token") if isinstance(data, dict) else None
    if method not in _VAULT_AUTH_KEYS:
        reader.fail(_join(path, "method"), "must be one of token, approle, kubernetes, jwt")
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
            reader.fail(_join(path, "role"), f"is required for {method} auth")
        jwt_file = reader.path_value(raw, "jwt_file", path)
        if jwt_file is None:
            if method == "jwt":
                reader.fail(_join(path, "jwt_file"), "is required for jwt auth")
            jwt_file = K8S_TOKEN_FILE
        auth = VaultAuthSettings(
            method=method, role=role, jwt_file=jwt_file,
            mount=reader.string(raw, "mount", path, method),
        )  # fmt: skip
    return auth if len(reader.problems) == problems_before else None


_CLIENT_KEYS = {
    "auth", "htpasswd", "groups", "tenants", "token", "access", "login_limit", "trusted_proxies",
}  # fmt: skip


def _parse_clients(data: Any, reader: _Reader) -> ClientsSettings:
    if data is None:
        return ClientsSettings()
    path = "clients"
    raw = reader.mapping(data, path, _CLIENT_KEYS)
    auth = reader.choice(raw, "auth", path, ("none", "basic", "token"), "none")
    htpasswd = reader.existing_file(raw, "htpasswd", path)
    if auth != "none" and htpasswd is None:
        reader.fail("clients.htpasswd", f"is required with auth: {auth}")
    elif htpasswd is not None and htpasswd.is_file():
        try:
            read_htpasswd(htpasswd)
        except HtpasswdError as exc:
            reader.fail("clients.htpasswd", f"{htpasswd}: {exc}")
        except (OSError, UnicodeDecodeError) as exc:
            reader.fail("clients.htpasswd", f"{htpasswd}: cannot read: {exc}")
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
    if token.key_file is not None and token.key_file.is_file():
        try:
            load_signing_key(token.key_file.read_bytes())
        except SigningKeyError as exc:
            reader.fail("clients.token.key_file", f"{token.key_file}: {exc}")
        except OSError as exc:
            reader.fail("clients.token.key_file", f"{token.key_file}: cannot read: {exc}")
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
            reader.fail(_join(rpath, "users"), "is required")
        if not repos:
            reader.fail(_join(rpath, "repositories"), "is required")
        for user in users:
            if user.startswith("group:") and user[6:] not in groups:
                reader.fail(_join(rpath, "users"), f"unknown group {user[6:]!r}")
        for action in actions:
            if action not in ("pull", "push", "delete", "*"):
                reader.fail(_join(rpath, "actions"), f"unknown action {action!r}")
        rules.append(AccessRule(users, repos, actions))
    return ClientsSettings(
        auth=auth, htpasswd=htpasswd, groups=groups, tenants=tenants, token=token,
        access=tuple(rules), login_limit=login_limit, trusted_proxies=proxies,
    )  # fmt: skip


def _parse_member_map(data: Any, path: str, reader: _Reader) -> dict[str, tuple[str, ...]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        reader.fail(path, "must be a mapping of name to a list of users")
        return {}
    return {str(k): reader.string_list(data, k, path) for k in data}


_TOP_KEYS = {
    "listen", "public_url", "tls", "log", "metrics", "timeouts", "shutdown_grace",
    "routing", "upstreams", "vault", "clients", "limits",
}  # fmt: skip


def parse_settings(
    data: Any, *, environ: Mapping[str, str], base_dir: Path, source: str
) -> Settings:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    problems: list[str] = []
    reader = _Reader(problems, environ, base_dir)
    if not isinstance(data, dict):
        raise ConfigError(["(top level): must be a mapping"])
    raw = reader.mapping(data, "", _TOP_KEYS)

    listen = parse_listen(raw.get("listen", "0.0.0.0:5000"), "listen", reader)
    public_url = None
    if raw.get("public_url") is not None:
        public_url = _parse_http_url(raw["public_url"], "public_url", reader)

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
        if not isinstance(key, str) or not _is_registry_key(key):
            reader.fail(path, "key must be a registry host name, optionally with :port")
            continue
        norm = normalize_registry(key)
        if norm in upstreams:
            reader.fail(path, f"duplicates upstream {norm!r}")
            continue
        upstream = _parse_upstream(norm, value, path, reader)
        if upstream:
            upstreams[norm] = upstream

    rraw = reader.mapping(raw.get("routing"), "routing", {"default", "hosts"})
    default = rraw.get("default", DOCKER_HUB if DOCKER_HUB in upstreams else None)
    if default is not None:
        if not isinstance(default, str):
            reader.fail("routing.default", "must be an upstream key or null")
            default = None
        else:
            default = normalize_registry(default)
            if uraw and default not in upstreams and not _has_problem(problems, "upstreams."):
                reader.fail("routing.default", f"{default!r} is not a configured upstream")
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

    vault = _parse_vault(raw.get("vault"), reader)
    clients = _parse_clients(raw.get("clients"), reader)
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

    if problems:
        raise ConfigError(problems)
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
        source=source,
    )


def _parse_limits(data: Any, reader: _Reader) -> LimitsSettings:
    raw = reader.mapping(
        data,
        "limits",
        {"max_connections", "max_line_size", "max_field_size", "max_headers", "keepalive_timeout"},
    )
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
    )


def _has_problem(problems: list[str], prefix: str) -> bool:
    return any(p.startswith(prefix) for p in problems)


def _is_registry_key(key: str) -> bool:
    host, _, port = key.partition(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return False
    return bool(host) and _is_host(host)


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    read_text: Callable[[Path], str] = lambda p: p.read_text(encoding="utf-8"),
) -> Settings:
    """``--config PATH``, else ``$REGISTRY_GATEWAY_CONFIG``, else the embedded default."""
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
    return parse_settings(data, environ=env, base_dir=base_dir, source=source)
