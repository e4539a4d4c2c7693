"""The Redis connection every replica shares: leases, tag answers, token buckets.

Every call is bounded (``CALL_TIMEOUT``) and turns any Redis failure into
:class:`ClusterUnavailable`; callers then do what a lone replica does. redis-py reconnects by
itself on the next call, so coordination resumes as soon as Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..credentials.base import CredentialsError
from ..log import get_logger
from ..metrics import Metrics
from ..settings import ClusterSettings

log = get_logger(__name__)
T = TypeVar("T")

CALL_TIMEOUT = 0.5  # seconds; a slower Redis counts as down for this call

# Compare-and-extend / compare-and-delete: only the holder's token may touch its lease.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then " \
         "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"  # fmt: skip
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then " \
           "return redis.call('del', KEYS[1]) else return 0 end"  # fmt: skip
# GCRA token bucket: KEYS[1] holds the theoretical arrival time (ms). ARGV: now_ms,
# interval_ms (1/rate), burst, cost, force. Returns 0 when allowed, else ms until it would be;
# force charges the cost whatever it returns (bytes already sent).
_BUCKET = """
local tat = tonumber(redis.call('get', KEYS[1]) or ARGV[1])
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - interval * burst
local wait = 0
if allow_at > now then wait = math.ceil(allow_at - now) end
if wait > 0 and ARGV[5] ~= '1' then return wait end
redis.call('set', KEYS[1], new_tat, 'px', math.ceil(new_tat - now) + 1000)
return wait
"""


class ClusterUnavailable(Exception):
    """Redis did not answer in time: go on alone."""


class Lease:
    """This replica fills ``key`` while it renews the lease; released when the fill ends."""

    def __init__(self, cluster: Cluster, name: str, token: str) -> None:
        self._cluster = cluster
        self.name = name
        self._token = token
        self.lost = False
        self._task = asyncio.create_task(self._renew(), name=f"lease-{name}")

    async def _renew(self) -> None:
        period = self._cluster.settings.fill_lease / 3
        ms = int(self._cluster.settings.fill_lease * 1000)
        while True:
            await asyncio.sleep(period)
            try:
                kept = await self._cluster.run(
                    "renew", lambda r: r.eval(_RENEW, 1, self.name, self._token, ms)
                )
            except ClusterUnavailable:
                continue  # Redis will expire it or we renew next time; the fill goes on
            if not kept and not self.lost:
                self.lost = True
                log.warning("cluster_lease_lost", lease=self.name)

    async def release(self) -> None:
        self._task.cancel()
        with contextlib.suppress(ClusterUnavailable):  # else it expires within fill_lease
            await self._cluster.run(
                "release", lambda r: r.eval(_RELEASE, 1, self.name, self._token)
            )


class Cluster:
    def __init__(
        self,
        settings: ClusterSettings,
        metrics: Metrics,
        *,
        password: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        assert settings.redis is not None
        self.settings = settings
        self.prefix = settings.redis.key_prefix
        self._metrics = metrics
        self._password = password
        self._client: aioredis.Redis | None = None
        self.up = True
        metrics.cluster_up.set(1)

    async def _connect(self) -> aioredis.Redis:
        """The client, made on first use (the password may come from Vault)."""
        if self._client is None:
            assert self.settings.redis is not None
            password = await self._password() if self._password is not None else None
            self._client = aioredis.Redis.from_url(
                self.settings.redis.url,
                password=password,
                socket_timeout=CALL_TIMEOUT,
                socket_connect_timeout=CALL_TIMEOUT,
                retry_on_timeout=False,
                decode_responses=True,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def run(self, operation: str, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """One Redis call, bounded; ClusterUnavailable when it failed or was slow."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT * 2):
                result = await call(await self._connect())
        except (RedisError, OSError, TimeoutError, CredentialsError) as exc:
            self._metrics.cluster_errors.labels(operation).inc()
            if self.up:
                self.up = False
                self._metrics.cluster_up.set(0)
                log.warning("cluster_unavailable", operation=operation, error=type(exc).__name__,
                            detail="going on alone until Redis answers")  # fmt: skip
            raise ClusterUnavailable(str(exc)) from exc
        if not self.up:
            self.up = True
            self._metrics.cluster_up.set(1)
            log.info("cluster_recovered", operation=operation)
        return result

    # -- fill leases ------------------------------------------------------------------------

    def lease_name(self, namespace: str, digest: str) -> str:
        return f"{self.prefix}fill:{namespace}:{digest}"

    async def acquire(self, name: str) -> Lease | None:
        """The lease for ``name`` if nobody holds it, else None (ClusterUnavailable: alone)."""
        token = secrets.token_hex(8)
        ms = int(self.settings.fill_lease * 1000)
        got = await self.run("acquire", lambda r: r.set(name, token, nx=True, px=ms))
        return Lease(self, name, token) if got else None

    async def held(self, name: str) -> bool:
        return bool(await self.run("held", lambda r: r.exists(name)))

    # -- shared tag answers -----------------------------------------------------------------

    def tag_name(self, namespace: str, name: str, tag: str, accept: str) -> str:
        return f"{self.prefix}tag:{namespace}:{name}:{tag}:{accept}"

    async def tag_get(self, key: str) -> tuple[str, str, float] | None:
        """(digest, media type, seconds since it was confirmed) or None."""
        raw = await self.run("tag_get", lambda r: r.get(key))
        if not raw:
            return None
        data: dict[str, Any] = json.loads(raw)
        return data["digest"], data["media_type"], max(0.0, time.time() - data["at"])

    async def tag_put(self, key: str, digest: str, media_type: str, ttl: float) -> None:
        value = json.dumps({"digest": digest, "media_type": media_type, "at": time.time()})
        await self.run("tag_put", lambda r: r.set(key, value, px=max(1, int(ttl * 1000))))

    async def tag_claim(self, key: str, ttl: float) -> bool:
        """Whether this replica is the one to revalidate ``key`` now (others reuse its answer)."""
        ms = max(1, int(min(ttl, 10.0) * 1000))
        return bool(
            await self.run("tag_claim", lambda r: r.set(f"{key}:busy", "1", nx=True, px=ms))
        )

    # -- shared counters --------------------------------------------------------------------

    async def take(
        self, key: str, rate: float, burst: float, cost: float = 1.0, *, force: bool = False
    ) -> float:
        """Take ``cost`` from the token bucket ``key``: 0 when allowed, else seconds to wait."""
        now_ms = int(time.time() * 1000)
        interval = 1000.0 / rate
        waited = await self.run(
            "take",
            lambda r: r.eval(
                _BUCKET, 1, f"{self.prefix}{key}", now_ms, interval, burst, cost, int(force)
            ),
        )
        return int(waited) / 1000.0
