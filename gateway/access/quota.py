"""Per-caller rate limits (``clients.rate_limits``): a token bucket per principal.

The principal is the user, or the client address for anonymous callers (behind
``clients.trusted_proxies`` the forwarded one). Each request takes one token from a bucket of
``burst`` refilled at ``requests_per_second``; with ``bytes_per_second`` the body bytes sent
are charged to a second bucket after each answer, and a caller in debt is refused until it is
paid off. Refused: 429 ``TOOMANYREQUESTS`` with ``Retry-After`` in whole seconds.

With ``cluster.redis`` the buckets live in Redis (one GCRA script, atomic), so every replica
counts against the same limit; when Redis fails each replica falls back to its own buckets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from cachetools import TTLCache

from ..cluster.coordinator import Cluster, ClusterUnavailable
from ..errors import TooManyRequests
from ..metrics import Metrics
from ..settings import RateLimitSettings

MAX_PRINCIPALS = 100_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Buckets:
    """Local GCRA buckets (the same arithmetic as the Redis script), bounded in number."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: TTLCache[str, float] = TTLCache(MAX_PRINCIPALS, 3600, timer=clock)

    def take(
        self, key: str, rate: float, burst: float, cost: float = 1.0, *, force: bool = False
    ) -> float:
        """0 when allowed, else seconds until it would be; ``force`` charges regardless."""
        now = self._clock()
        interval = 1.0 / rate
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + interval * cost
        wait = max(0.0, new_tat - interval * burst - now)
        if wait > 0 and not force:
            return wait
        self._tat[key] = new_tat
        return wait


class Quota:
    def __init__(
        self,
        settings: RateLimitSettings,
        metrics: Metrics,
        *,
        cluster: Cluster | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self.cluster = cluster
        self._local = Buckets(clock=clock)

    async def _take(
        self, key: str, rate: float, burst: float, cost: float, *, force: bool = False
    ) -> float:
        if self.cluster is not None:
            try:
                return await self.cluster.take(key, rate, burst, cost, force=force)
            except ClusterUnavailable:
                pass  # alone: this replica's own bucket
        return self._local.take(key, rate, burst, cost, force=force)

    async def admit(self, principal: str) -> None:
        """Take one request from ``principal``'s bucket, or raise 429 with Retry-After."""
        s = self.settings
        wait = await self._take(f"rate:req:{principal}", s.requests_per_second, s.burst, 1.0)
        if not wait and s.bytes_per_second:
            # cost 0: refused only while the bytes already sent exceed the allowance
            wait = await self._take(
                f"rate:bytes:{principal}", s.bytes_per_second, s.bytes_per_second, 0.0
            )
        if wait:
            self._metrics.rate_limited.labels("client").inc()
            raise TooManyRequests(
                "rate limit exceeded; slow down",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    async def charge_bytes(self, principal: str, sent: int) -> None:
        s = self.settings
        if s.bytes_per_second and sent > 0:
            await self._take(
                f"rate:bytes:{principal}", s.bytes_per_second, s.bytes_per_second, float(sent),
                force=True,
            )  # fmt: skip


def principal_key(user: str | None, address: str) -> str:
    """Users by name; anonymous callers by their address (never both in one namespace)."""
    return f"user:{user}" if user else f"addr:{address}"


async def limit(request: web.Request) -> None:
    """The admitted caller's request counts against its limit (429 past it)."""
    from ..keys import QUOTA_KEY  # keys imports this module

    quota = request.app.get(QUOTA_KEY)
    if quota is not None:
        await quota.admit(_principal(request))


@web.middleware
async def charge_sent(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After each answer: the body bytes sent count against the caller's bytes_per_second."""
    from ..keys import QUOTA_KEY, SENT

    try:
        return await handler(request)
    finally:
        quota = request.app.get(QUOTA_KEY)
        sent = request.get(SENT)
        if quota is not None and sent is not None and sent.total:
            await quota.charge_bytes(_principal(request), sent.total)


def _principal(request: web.Request) -> str:
    from ..keys import ACCESS_KEY, PRINCIPAL

    return principal_key(request.get(PRINCIPAL), request.app[ACCESS_KEY].address(request))
