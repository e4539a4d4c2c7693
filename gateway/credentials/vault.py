"""Upstream credentials from a Vault/OpenBao KV secret: login, token lifecycle, cached reads.

hvac is synchronous (PROTOCOL §7), so this module has two halves:

- ``VaultSession`` runs on worker threads. It owns the one ``hvac.Client``: the login for the
  configured auth method, renew-self and KV reads. One lock serializes every call on the
  client: hvac's login rewrites the client's token, and a ``requests.Session`` is not promised
  to be thread-safe.
- ``VaultCredentialStore`` runs on the event loop. It hands session calls to a small dedicated
  executor (carrying contextvars, so worker log lines keep the request id) and never waits
  longer than a deadline; it caches each secret for ``cache_ttl`` with one read per cold path,
  serves the last good secret for up to ``max_stale`` while Vault is down, and runs the named
  task that renews the token at two thirds of its lease or logs in again.

This is the only module that imports hvac. No secret value ever reaches a log line, an error
message or a ``repr``: errors name the KV path and the kind of failure, nothing Vault returned.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import dataclasses
import json
import math
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard, TypeVar

import hvac  # type: ignore[import-untyped]
import requests
import urllib3
from hvac import exceptions as vault_errors

from ..caching import Clock, CoalescingCache
from ..log import get_logger, redact_value
from ..metrics import Metrics
from ..secret import Secret
from ..settings import UpstreamSettings, VaultCredentialsSpec, VaultSettings
from .base import CredentialsError, UpstreamCredentials
from .static import docker_config_entry

log = get_logger(__name__)

T = TypeVar("T")

WORKERS = 4
RENEW_AT = 2 / 3  # of the lease (PROTOCOL §7)
CAPPED = 0.9  # a renewal granting less than this share of the usual TTL hit the max TTL
MIN_INTERVAL = 0.5  # seconds; the lifecycle never spins faster than this
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds between lifecycle retries while Vault fails
STALE_RETRY = 5.0  # seconds a stale secret is served before Vault is tried again
SECRET_FORMATS = "username+password, token, auth, .dockerconfigjson"  # noqa: S105
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")


class VaultUnavailable(Exception):
    """Vault could not give an answer: unreachable, sealed, erroring, or refusing the login.

    ``reason`` is short and safe to show: it never holds anything Vault sent back.
    """

    def __init__(self, reason: str, *, status: int = 503) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason)


class SecretMissing(Exception):
    """Vault answered that nothing (or only a deleted version) is stored at the path."""


class Location(NamedTuple):
    """A KV secret: engine mount and path inside it (tenant already substituted)."""

    mount: str
    path: str

    def __str__(self) -> str:
        return f"{self.mount}/{self.path}"


# --- secret formats (pure) -----------------------------------------------------------------


def credentials_from_secret(
    data: Mapping[str, Any], upstream: UpstreamSettings, where: Location
) -> UpstreamCredentials:
    """The first usable format: username+password, token, auth, ``.dockerconfigjson``."""
    username, password = data.get("username"), data.get("password")
    if _text(username) and _text(password):
        return UpstreamCredentials(username=username, password=Secret(password), source="vault")
    token = data.get("token")
    if _text(token):
        return UpstreamCredentials(token=Secret(token), source="vault")
    auth = data.get("auth")
    if _text(auth):
        try:
            user, colon, word = base64.b64decode(auth, validate=True).decode().partition(":")
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
            user, colon, word = "", "", ""
        if not (user and colon):
            raise CredentialsError(f"Vault secret {where}: auth is not base64 of user:password")
        return UpstreamCredentials(username=user, password=Secret(word), source="vault")
    if ".dockerconfigjson" in data:
        raw = data[".dockerconfigjson"]
        try:
            config = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            config = None
        if not isinstance(config, dict):
            raise CredentialsError(f"Vault secret {where}: .dockerconfigjson is not a JSON object")
        found = docker_config_entry(config, upstream)
        if found is None:
            raise CredentialsError(
                f"Vault secret {where}: .dockerconfigjson has no usable entry for {upstream.key}"
            )
        return dataclasses.replace(found, source="vault")
    raise CredentialsError(f"Vault secret {where} holds none of {SECRET_FORMATS}")


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def secret_location(spec: VaultCredentialsSpec, tenant: str | None, default_mount: str) -> Location:
    """Where the spec's secret lives for this tenant; ``{tenant}`` is substituted."""
    mount = (spec.mount or default_mount).strip("/")
    if not spec.templated:
        return Location(mount, spec.path)
    if tenant is None:
        raise CredentialsError(
            f"Vault path {mount}/{spec.path} needs the caller's tenant; this request has none"
        )
    # SECURITY: a tenant is one path segment, never a way to climb to another tenant's secret.
    if not _TENANT.fullmatch(tenant) or ".." in tenant:
        raise CredentialsError(f"tenant {tenant!r} cannot be used in a Vault path")
    return Location(mount, spec.path.replace("{tenant}", tenant))


# --- the worker-thread half ----------------------------------------------------------------


@dataclass(frozen=True)
class _Lease:
    ttl: float  # seconds from `obtained`; 0 means the token never expires
    renewable: bool
    usual_ttl: float  # what a renewal normally grants; less means the max TTL is near
    obtained: float
    capped: bool = False

    def due(self) -> float:
        """Monotonic time of the next renewal or login."""
        if self.ttl <= 0:
            return math.inf
        return self.obtained + max(self.ttl * RENEW_AT, MIN_INTERVAL)

    def expired(self, now: float) -> bool:
        return self.ttl > 0 and now >= self.obtained + self.ttl


class VaultSession:
    """The hvac client and its login state; every public method runs on a worker thread."""

    def __init__(self, settings: VaultSettings, metrics: Metrics, *, clock: Clock) -> None:
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        session = requests.Session()
        session.trust_env = False  # no proxy variables, no .netrc for the Vault address
        verify: bool | str = settings.tls_verify
        if settings.tls_verify and settings.ca_file is not None:
            verify = str(settings.ca_file)
        if not settings.tls_verify:
            # The operator chose this; say it once, not in an urllib3 warning on every call.
            log.warning("vault_tls_verify_disabled", url=settings.url)
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        # hvac prefers a given session's own `verify` (True by default) over its argument.
        session.verify = verify
        # token="" stops hvac from reading VAULT_TOKEN or ~/.vault-token behind our back.
        self._client = hvac.Client(
            url=settings.url,
            token="",
            verify=verify,
            timeout=settings.timeout,
            namespace=settings.namespace,
            session=session,
        )
        self._lock = threading.Lock()
        self._lease: _Lease | None = None
        self._token_stamp: tuple[int, int] | None = None
        self._problem: str | None = "not logged in yet"
        self.on_change: Callable[[], None] = lambda: None  # a login, or the problem changed

    # Read from the loop thread without the lock: each is one attribute load.
    @property
    def problem(self) -> str | None:
        return self._problem

    def due_in(self) -> float:
        """Seconds until the lifecycle should renew or log in (0: now, inf: never)."""
        lease = self._lease
        if lease is None:
            return 0.0
        due = lease.due()
        return due if math.isinf(due) else max(due - self._clock(), 0.0)

    def read(self, where: Location) -> Mapping[str, Any]:
        """The secret's key/value data; raises SecretMissing or VaultUnavailable."""
        with self._lock:
            try:
                fresh = self._needs_login()
                if fresh:
                    self._login()
                try:
                    data = self._read(where)
                except vault_errors.Forbidden:
                    if fresh:
                        raise
                    # An expired or revoked token reads as 403 (PROTOCOL §7): log in, retry once.
                    log.info("vault_read_forbidden", path=str(where))
                    self._login()
                    data = self._read(where)
            except vault_errors.InvalidPath as exc:
                self._set_problem(None)
                raise SecretMissing(str(where)) from exc
            except vault_errors.Forbidden as exc:
                self._set_problem(None)  # logged in, but the policy does not cover the path
                _log_failure("vault_read_denied", exc, path=str(where))
                raise VaultUnavailable("Vault denied reading the path", status=502) from exc
            except (SecretMissing, VaultUnavailable):
                raise
            except Exception as exc:
                self._set_problem(f"unreachable: {_reason(exc)}")
                _log_failure("vault_read_failed", exc, path=str(where))
                raise VaultUnavailable(_reason(exc)) from exc
            self._set_problem(None)
            return data

    def maintain(self) -> None:
        """Renew the token while it is renewable and below its max TTL, else log in again."""
        with self._lock:
            lease = self._lease
            if lease is None or not lease.renewable or lease.capped or self._needs_login():
                self._login()
                return
            try:
                self._renew(lease)
            except Exception as exc:
                _log_failure("vault_renew_failed", exc)
                self._login()

    def close(self) -> None:
        self._client.adapter.close()

    # --- under the lock -------------------------------------------------------------------

    def _set_problem(self, problem: str | None) -> None:
        if problem != self._problem:
            self._problem = problem
            self.on_change()

    def _needs_login(self) -> bool:
        if self._lease is None or self._lease.expired(self._clock()):
            return True
        token_file = self._settings.auth.token_file
        return token_file is not None and _stamp(token_file) != self._token_stamp

    def _login(self) -> None:
        method = self._settings.auth.method
        self._lease = None
        try:
            with self._observed("login"):
                lease = self._token_lookup() if method == "token" else self._method_login()
        except Exception as exc:
            self._set_problem(f"login failed ({method}): {_reason(exc)}")
            _log_failure("vault_login_failed", exc, method=method)
            raise VaultUnavailable(f"Vault login failed: {_reason(exc)}") from exc
        self._lease = lease
        self._set_problem(None)
        log.info("vault_logged_in", method=method, lease_seconds=lease.ttl,
                 renewable=lease.renewable)  # fmt: skip
        self.on_change()

    def _method_login(self) -> _Lease:
        auth = self._settings.auth
        client = self._client.auth
        if auth.method == "approle":
            role_id = auth.role_id.reveal() if auth.role_id else _read_file(auth.role_id_file)
            secret_id = (
                auth.secret_id.reveal() if auth.secret_id else _read_file(auth.secret_id_file)
            )
            response = client.approle.login(
                role_id=role_id, secret_id=secret_id, mount_point=auth.mount
            )
        elif auth.method == "kubernetes":
            # Projected service-account tokens rotate: read the file at every login.
            jwt = _read_file(auth.jwt_file)
            response = client.kubernetes.login(role=auth.role, jwt=jwt, mount_point=auth.mount)
        else:
            response = client.jwt.jwt_login(
                role=auth.role, jwt=_read_file(auth.jwt_file), path=auth.mount
            )
        granted = response["auth"]
        ttl = float(granted["lease_duration"])
        return _Lease(ttl, bool(granted["renewable"]), ttl, self._clock())

    def _token_lookup(self) -> _Lease:
        auth = self._settings.auth
        if auth.token_file is not None:
            self._token_stamp = _stamp(auth.token_file)
            self._client.token = _read_file(auth.token_file)
        else:
            assert auth.token is not None
            self._client.token = auth.token.reveal()
        info = self._client.auth.token.lookup_self()["data"]
        ttl = float(info.get("ttl") or 0)
        usual = float(info.get("period") or info.get("creation_ttl") or ttl)
        return _Lease(ttl, bool(info.get("renewable")), usual, self._clock())

    def _renew(self, lease: _Lease) -> None:
        with self._observed("renew"):
            granted = self._client.auth.token.renew_self()["auth"]
        ttl = float(granted["lease_duration"])
        if ttl <= 0:
            self._lease = None  # nothing left to renew: the next step is a login
            return
        capped = ttl < lease.usual_ttl * CAPPED
        self._lease = _Lease(ttl, bool(granted["renewable"]), lease.usual_ttl, self._clock(),
                             capped)  # fmt: skip
        self._set_problem(None)
        log.info("vault_token_renewed", lease_seconds=ttl, max_ttl_reached=capped)

    def _read(self, where: Location) -> Mapping[str, Any]:
        kv = self._client.secrets.kv
        with self._observed("read"):
            if self._settings.kv_version == 2:
                response = kv.v2.read_secret_version(
                    path=where.path, mount_point=where.mount, raise_on_deleted_version=True
                )
                data = response["data"]["data"]
            else:
                data = kv.v1.read_secret(path=where.path, mount_point=where.mount)["data"]
        if not isinstance(data, dict):
            raise SecretMissing(str(where))
        return data

    @contextlib.contextmanager
    def _observed(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        result = "error"
        try:
            yield
            result = "ok"
        finally:
            self._metrics.vault_duration.labels(operation).observe(time.perf_counter() - started)
            self._metrics.vault_requests.labels(operation, result).inc()


def _read_file(path: Path | None) -> str:
    assert path is not None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise VaultUnavailable(f"cannot read {path}: {exc.strerror}") from exc


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _reason(exc: BaseException) -> str:
    """A short, secret-free description of a failed Vault call."""
    if isinstance(exc, VaultUnavailable):
        return exc.reason
    if isinstance(exc, vault_errors.VaultError):
        return f"Vault answered {type(exc).__name__}"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _log_failure(event: str, exc: BaseException, **fields: Any) -> None:
    # Vault's own words (or the TLS/socket error) help an operator; they go to the log only,
    # scrubbed of anything token-like and kept short, never into an error a caller sees.
    errors = getattr(exc, "errors", None)
    if errors:
        fields["vault_errors"] = redact_value("; ".join(map(str, errors)))[:300]
    elif isinstance(exc, requests.exceptions.RequestException):
        fields["error"] = redact_value(str(exc))[:300]
    log.warning(event, reason=_reason(exc), **fields)


# --- the event-loop half -------------------------------------------------------------------

# Which read of which secret this request was given, so `rejected` drops only that one.
_SERVED: contextvars.ContextVar[tuple[Location, float] | None] = contextvars.ContextVar(
    "vault_secret_served", default=None
)


@dataclass(frozen=True, repr=False)
class _Stored:
    data: Mapping[str, Any]
    read_at: float
    stale: bool = False

    def __repr__(self) -> str:
        return f"_Stored(keys={sorted(self.data)}, stale={self.stale})"


class VaultCredentialStore:
    """The ``CredentialStore`` for upstreams whose credentials are ``vault: {path, mount}``."""

    def __init__(
        self,
        settings: VaultSettings,
        upstreams: Mapping[str, UpstreamSettings],
        metrics: Metrics,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._settings = settings
        self._upstreams = upstreams
        self._metrics = metrics
        self._clock = clock
        self._session = VaultSession(settings, metrics, clock=clock)
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="vault")
        self._cache: CoalescingCache[Location, _Stored] = CoalescingCache(clock=clock)
        self._last_good: dict[Location, _Stored] = {}
        # A call may wait for the lock behind one other call, then make its own.
        self._deadline = 2 * settings.timeout + 1
        self._wake = asyncio.Event()
        self._lifecycle: asyncio.Task[None] | None = None
        self._closed = False

    def problem(self) -> str | None:
        """The readiness check: None while logged in and reachable, else a short reason."""
        return self._session.problem

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def woken() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._wake.set)

        self._session.on_change = woken
        self._lifecycle = asyncio.create_task(self._maintain_token(), name="vault-token-lifecycle")

    async def close(self) -> None:
        self._closed = True
        if self._lifecycle is not None:
            self._lifecycle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lifecycle
            self._lifecycle = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    async def get(self, upstream: str, tenant: str | None) -> UpstreamCredentials | None:
        settings = self._upstreams[upstream]
        where = self._location(settings, tenant)
        stored, _hit = await self._cache.get_or_load(where, lambda: self._load(where))
        if stored.stale:
            self._metrics.credentials_stale.labels(upstream).inc()
        _SERVED.set((where, stored.read_at))
        try:
            return credentials_from_secret(stored.data, settings, where)
        except CredentialsError as exc:
            log.error("vault_secret_unusable", upstream=upstream, path=str(where), problem=str(exc))
            self._cache.invalidate(where)  # a fixed secret is picked up by the next request
            raise

    async def rejected(self, upstream: str, tenant: str | None) -> bool:
        try:
            where = self._location(self._upstreams[upstream], tenant)
        except CredentialsError:
            return False
        stored, served = self._cache.peek(where), _SERVED.get()
        if stored and served and served[0] == where and stored.read_at > served[1]:
            return True  # another refused request has already read it again
        self._cache.invalidate(where)
        log.info("vault_secret_dropped", upstream=upstream, path=str(where))
        return True

    def _location(self, upstream: UpstreamSettings, tenant: str | None) -> Location:
        spec = upstream.credentials
        assert isinstance(spec, VaultCredentialsSpec)
        return secret_location(spec, tenant, self._settings.kv_mount)

    async def _load(self, where: Location) -> tuple[_Stored, float]:
        try:
            data = await self._run(self._session.read, where)
        except SecretMissing as exc:
            self._last_good.pop(where, None)
            log.error("vault_secret_missing", path=str(where))
            raise CredentialsError(f"no Vault secret at {where}") from exc
        except VaultUnavailable as exc:
            return self._stale(where, exc)
        stored = _Stored(data, self._clock())
        self._last_good[where] = stored
        return stored, self._settings.cache_ttl

    def _stale(self, where: Location, exc: VaultUnavailable) -> tuple[_Stored, float]:
        """The last good secret while it is within max_stale past its freshness, or 503."""
        last = self._last_good.get(where)
        now = self._clock()
        if last is not None:
            stale_for = now - last.read_at - self._settings.cache_ttl
            left = self._settings.max_stale - stale_for
            if left > 0:
                log.warning("vault_credentials_stale", path=str(where), reason=exc.reason,
                            stale_seconds=round(max(stale_for, 0.0), 1))  # fmt: skip
                return _Stored(last.data, last.read_at, stale=True), min(STALE_RETRY, left)
            self._last_good.pop(where, None)
        raise CredentialsError(f"Vault secret {where}: {exc.reason}", status=exc.status) from exc

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        """Run a session call on the Vault executor, with this context's log bindings."""
        context = contextvars.copy_context()
        future = asyncio.wrap_future(self._executor.submit(context.run, call, *args))
        try:
            # asyncio.timeout, not wait_for: wait_for may swallow a cancellation that races
            # with the result (CPython gh-86296), and close() must always stop the task.
            async with asyncio.timeout(self._deadline):
                return await future
        except TimeoutError as exc:
            log.warning("vault_call_timed_out", seconds=self._deadline)
            raise VaultUnavailable(f"no answer within {self._deadline:g}s") from exc

    async def _maintain_token(self) -> None:
        """Log in at start, renew at two thirds of each lease, log in again when needed.

        While Vault fails (a failed renewal or login, or a failed read) it retries with a
        growing pause, so /readyz recovers soon after Vault does even when no read is due.
        """
        failures = 0
        while not self._closed:
            self._wake.clear()
            if self._session.problem is None:
                failures = 0
            retry = min(RETRY_FIRST * 2**failures, RETRY_MAX)
            if failures:
                delay = retry
            elif self._session.problem is not None:
                delay = min(self._session.due_in(), retry)
            else:
                delay = self._session.due_in()
            if delay > 0:
                try:
                    async with asyncio.timeout(None if math.isinf(delay) else delay):
                        await self._wake.wait()
                    continue  # logged in elsewhere, or the problem changed: plan again
                except TimeoutError:
                    pass
            try:
                await self._run(self._session.maintain)
                failures = 0
            except VaultUnavailable:
                failures += 1
            except Exception:
                log.exception("vault_lifecycle_failed")
                failures += 1
