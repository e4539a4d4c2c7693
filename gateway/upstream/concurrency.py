"""Per-upstream concurrency caps (``upstreams.<key>.max_concurrency``), per replica.

A slot is taken before the first byte goes to the upstream and given back when the upstream
connection is released (the body read to its end, or closed): so at most ``max_concurrency``
requests are open at that upstream at any moment. A request that finds every slot taken waits
up to ``timeouts.read`` seconds, then gets 503 with ``Retry-After`` and
``registry_gateway_rate_limited_total{reason="upstream_concurrency"}``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

import aiohttp

from ..errors import RegistryError
from ..metrics import Metrics
from ..settings import UpstreamSettings

RETRY_AFTER_MIN = 1


class UpstreamBusy(RegistryError):
    code, status, default_message = "UNAVAILABLE", 503, "upstream busy"


class Slot:
    """One taken slot; ``hold(response)`` keeps it until that response's connection is done."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None

    def hold(self, response: aiohttp.ClientResponse) -> None:
        connection = response.connection
        if connection is None:  # already read to the end (HEAD, small bodies)
            self.release()
        else:
            connection.add_callback(self.release)


class UpstreamSlots:
    def __init__(
        self, upstreams: Mapping[str, UpstreamSettings], metrics: Metrics, *, wait: float
    ) -> None:
        self._metrics = metrics
        self._wait = wait
        self._semaphores = {
            key: asyncio.Semaphore(up.max_concurrency)
            for key, up in upstreams.items()
            if up.max_concurrency
        }

    async def acquire(self, upstream: str) -> Slot | None:
        """A slot of ``upstream`` (None when it has no cap); UpstreamBusy after the wait."""
        semaphore = self._semaphores.get(upstream)
        if semaphore is None:
            return None
        try:
            async with asyncio.timeout(self._wait):
                await semaphore.acquire()
        except TimeoutError:
            self._metrics.rate_limited.labels("upstream_concurrency").inc()
            raise UpstreamBusy(
                f"upstream {upstream} is at its max_concurrency; try again later",
                detail={"upstream": upstream},
                headers={"Retry-After": str(max(RETRY_AFTER_MIN, math.ceil(self._wait / 4)))},
            ) from None
        return Slot(semaphore)
