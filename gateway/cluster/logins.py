"""``clients.login_limit`` counted across replicas: failed logins per address in Redis.

The gatekeeper asks its limiter synchronously, so this limiter keeps the local sliding window
and adds what Redis says: every failure is counted in a shared fixed window (``INCR`` with the
window as expiry) in the background, and the cluster-wide count it returns is remembered for
that address. A caller spreading guesses over N replicas is refused after at most
``failures + N - 1`` of them; with Redis down each replica counts alone.
"""

from __future__ import annotations

import asyncio
import math
import time

from cachetools import TTLCache

from ..access.ratelimit import LoginLimiter
from .coordinator import Cluster, ClusterUnavailable

# Count one failure; returns [count, ms left in the window].
_COUNT = """
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('pexpire', KEYS[1], ARGV[1]) end
return {n, redis.call('pttl', KEYS[1])}
"""


class SharedLoginLimiter(LoginLimiter):
    def __init__(self, cluster: Cluster, failures: int, window: float) -> None:
        super().__init__(failures, window)
        self._cluster = cluster
        # address → (failures in the cluster's window, monotonic time the window ends)
        self._shared: TTLCache[str, tuple[int, float]] = TTLCache(65536, window)
        self._tasks: set[asyncio.Task[None]] = set()

    def retry_after(self, address: str) -> int | None:
        local = super().retry_after(address)
        count, until = self._shared.get(address, (0, 0.0))
        left = until - time.monotonic()
        if count >= self.failures and left > 0:
            return max(local or 0, math.ceil(left))
        return local

    def failed(self, address: str) -> None:
        super().failed(address)
        task = asyncio.get_running_loop().create_task(
            self._count(address), name="cluster-login-failure"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _count(self, address: str) -> None:
        key = f"{self._cluster.prefix}login:{address}"
        ms = int(self.window * 1000)
        try:
            count, pttl = await self._cluster.run(
                "login_failed", lambda r: r.eval(_COUNT, 1, key, ms)
            )
        except ClusterUnavailable:
            return  # alone: the local window still counts
        self._shared[address] = (int(count), time.monotonic() + max(int(pttl), 0) / 1000)
