"""Coalescing caches: cachetools stores the values, this module coordinates the loads.

cachetools is not asyncio-aware (tkem/cachetools#92), so a ``TLRUCache`` is touched only from
the event loop and a map of in-flight futures makes N concurrent misses for one key cause a
single load. Each value carries its own time to live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TLRUCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Clock = Callable[[], float]


HIT, JOINED, LOADED = "hit", "joined", "loaded"


class CoalescingCache(Generic[K, V]):
    """``get_or_load`` returns ``(value, outcome)``; a loader returns ``(value, ttl_seconds)``.

    The outcome says how the value came: ``hit`` from the store, ``joined`` by waiting on a
    load another caller started, ``loaded`` by running the loader.
    """

    def __init__(self, maxsize: int = 4096, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._store: TLRUCache[K, tuple[V, float]] = TLRUCache(
            maxsize=maxsize, ttu=lambda _k, v, now: now + v[1], timer=clock
        )
        self._inflight: dict[K, asyncio.Future[V]] = {}

    def peek(self, key: K) -> V | None:
        entry = self._store.get(key)
        return None if entry is None else entry[0]

    def put(self, key: K, value: V, ttl: float) -> None:
        # cachetools TLRUCache silently drops an item whose expiry is not in the future.
        if ttl > 0:
            self._store[key] = (value, ttl)

    def invalidate(self, key: K) -> None:
        self._store.pop(key, None)

    def invalidate_where(self, predicate: Callable[[K], bool]) -> int:
        keys = [k for k in list(self._store.keys()) if predicate(k)]
        for key in keys:
            self._store.pop(key, None)
        return len(keys)

    def __len__(self) -> int:
        return len(self._store)

    async def get_or_load(
        self, key: K, loader: Callable[[], Awaitable[tuple[V, float]]]
    ) -> tuple[V, str]:
        entry = self._store.get(key)
        if entry is not None:
            return entry[0], HIT
        pending = self._inflight.get(key)
        if pending is not None:
            # shield: one waiter being cancelled must not cancel the shared load.
            return await asyncio.shield(pending), JOINED
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value, ttl = await loader()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                # Nobody else may be waiting; mark the exception as retrieved.
                future.exception()
            raise
        else:
            self.put(key, value, ttl)
            future.set_result(value)
            return value, LOADED
        finally:
            self._inflight.pop(key, None)
