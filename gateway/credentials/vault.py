"""Upstream credentials from a Vault/OpenBao KV secret: the store on the event loop.

``VaultCredentialStore`` hands ``VaultSession`` calls (:mod:`.vault_session`, the worker-thread
half and the only module importing hvac) to a small dedicated executor, carrying contextvars so
worker log lines keep the request id, and never waits longer than a deadline. It caches each
secret for ``cache_ttl`` with one read per cold path, serves the last good secret for up to
``max_stale`` while Vault is down, and runs the named task that renews the token at two thirds
of its lease or logs in again. What a secret holds and where it lives is :mod:`.vault_secrets`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ..caching import Clock, CoalescingCache
from ..health import Degraded
from ..log import get_logger
from ..metrics import Metrics
from ..settings import UpstreamSettings, VaultCredentialsSpec, VaultSettings
from .base import CredentialsError, UpstreamCredentials
from .vault_secrets import Location, credentials_from_secret, secret_location
from .vault_session import SecretMissing, VaultSession, VaultUnavailable

log = get_logger(__name__)

T = TypeVar("T")

WORKERS = 4
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds between lifecycle retries while Vault fails
STALE_RETRY = 5.0  # seconds a stale secret is served before Vault is tried again

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
        self._checker: asyncio.Task[None] | None = None
        self._closed = False

    def problem(self) -> str | None:
        """The readiness check: None while logged in and reachable, else a short reason.

        While Vault is in trouble but cached secrets can still serve (for up to max_stale),
        the reason is a Degraded note: the gateway stays ready, the check says why.
        """
        problem = self._session.problem
        if problem is None:
            return None
        elapsed = self._clock() - self._session.problem_since
        if self._last_good and elapsed < self._settings.max_stale:
            return Degraded(f"{problem}; serving cached secrets (for up to max_stale)")
        return problem

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def woken() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._wake.set)

        self._session.on_change = woken
        self._lifecycle = asyncio.create_task(self._maintain_token(), name="vault-token-lifecycle")
        self._checker = asyncio.create_task(self._check_reachable(), name="vault-check")

    async def close(self) -> None:
        self._closed = True
        for task in (self._lifecycle, self._checker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._lifecycle = self._checker = None
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

    async def read(self, where: Location) -> Mapping[str, Any]:
        """Any KV secret the gateway itself needs (S3 keys, the Redis password), cached alike."""
        stored, _hit = await self._cache.get_or_load(where, lambda: self._load(where))
        return stored.data

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

    async def _check_reachable(self) -> None:
        """Every check_interval, ask Vault whether our token still works (lookup-self).

        Without it an idle gateway would report Vault "ok" until a pull needed a read. A
        failure sets the session's problem, which wakes the lifecycle to retry and turns the
        readiness check degraded (cached secrets) or failing (none, or past max_stale).
        """
        while not self._closed:
            await asyncio.sleep(self._settings.check_interval)
            # hvac's own timeout (vault.timeout) ends a hung call before _run's deadline, so
            # the check itself records "unreachable: timed out".
            with contextlib.suppress(VaultUnavailable):
                await self._run(self._session.check)
