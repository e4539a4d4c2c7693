"""The Vault client on worker threads: login for the configured method, renew-self, KV reads.

hvac is synchronous (PROTOCOL §7): ``VaultSession`` owns the one ``hvac.Client`` and every
public method runs on a worker thread of the store's executor (:mod:`.vault`). One lock
serializes every call on the client: hvac's login rewrites the client's token, and a
``requests.Session`` is not promised to be thread-safe.

This is the only module that imports hvac (and its HTTP library, requests). No secret value
ever reaches a log line, an error message or a ``repr``: errors name the KV path and the kind
of failure, nothing Vault returned.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac  # type: ignore[import-untyped]
import requests
import urllib3
from hvac import exceptions as vault_errors

from ..caching import Clock
from ..log import get_logger, redact_value
from ..metrics import Metrics
from ..settings import VaultSettings
from .vault_secrets import Location

# The store's logger name, as before the split: Vault's lines keep one name to filter on.
log = get_logger("gateway.credentials.vault")

RENEW_AT = 2 / 3  # of the lease (PROTOCOL §7)
CAPPED = 0.9  # a renewal granting less than this share of the usual TTL hit the max TTL
MIN_INTERVAL = 0.5  # seconds; the lifecycle never spins faster than this


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
        self.problem_since = clock()  # when the current problem began
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

    def check(self) -> None:
        """Is Vault still there and our token still good? (token lookup-self; PROTOCOL §7)

        Run on a schedule by the store, so /readyz notices an outage without any traffic.
        Not a metered Vault operation: the metrics count login, renew and read only.
        """
        with self._lock:
            if self._lease is None or self._problem is not None:
                return  # the lifecycle is logging in or retrying: it owns the problem then
            try:
                self._client.auth.token.lookup_self()
            except vault_errors.Forbidden as exc:
                self._lease = None  # revoked or expired behind our back: log in again
                self._set_problem("token no longer valid")
                _log_failure("vault_check_failed", exc)
            except Exception as exc:
                self._set_problem(f"unreachable: {_reason(exc)}")
                _log_failure("vault_check_failed", exc)

    def close(self) -> None:
        self._client.adapter.close()

    # --- under the lock -------------------------------------------------------------------

    def _set_problem(self, problem: str | None) -> None:
        if problem != self._problem:
            if self._problem is None:
                self.problem_since = self._clock()
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
