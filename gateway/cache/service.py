"""The cache service: store, LRU accounting, in-flight fills, tag index and repository links.

One instance per app (``CACHE_KEY``), started and stopped in ``cleanup_ctx``. Everything here
runs on the event loop; blocking work happens in the store's worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import aiohttp
from cachetools import LRUCache

from ..log import get_logger
from ..metrics import Metrics
from ..settings import CacheSettings, UpstreamSettings, VaultCredentialsSpec
from .digests import is_cacheable
from .eviction import LRU
from .filesystem import FilesystemStore, namespace_for
from .fill import Fill
from .index import TagIndex, media_type_of
from .store import ContentKey, DigestMismatch, Entry, Kind, Store

if TYPE_CHECKING:
    from ..cluster.coordinator import Cluster, Lease

log = get_logger(__name__)

MAINTENANCE_INTERVAL = 30.0
# A temp file untouched this long belongs to no live fill (an active fill writes continuously
# and the upstream read timeout ends a silent one long before).
TEMP_MAX_IDLE = 600.0
TOUCH_INTERVAL = 60.0
MAX_LINKS_REMEMBERED = 200_000


class Cache:
    def __init__(
        self, settings: CacheSettings, metrics: Metrics, store: Store | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store: Store = store or FilesystemStore(settings.dir)
        self.lru = LRU(settings.max_size)
        self.tags = TagIndex()
        self._fills: dict[ContentKey, Fill] = {}
        self._starting: dict[ContentKey, asyncio.Future[Fill | None]] = {}
        self._links: LRUCache[tuple[str, str, str], bool] = LRUCache(MAX_LINKS_REMEMBERED)
        self._media_types: LRUCache[ContentKey, str] = LRUCache(MAX_LINKS_REMEMBERED)
        self._touched: dict[ContentKey, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._start_problem: str | None = None
        self.cluster: Cluster | None = None  # set by the app with cluster.redis

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            entries = await self.store.start()
        except OSError as exc:
            self._start_problem = f"cache store unusable: {exc.strerror or exc}"
            log.warning("cache_store_unusable", problem=self._start_problem)
            return
        self.lru.load(entries)
        self.metrics.cache_size.set(self.lru.total)
        self._started = True
        log.info("cache_started", entries=len(entries), bytes=self.lru.total)
        await self.evict()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def maintain(self) -> None:
        """Periodically: refresh the store's health, sweep abandoned temp files."""
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL)
            if not self._started:  # a remote store that was down at start-up may be back
                self._start_problem = None
                await self.start()
                continue
            with contextlib.suppress(OSError):
                await self.store.check()
                swept = await self.store.sweep(TEMP_MAX_IDLE)
                if swept:
                    log.info("cache_temp_swept", files=swept)

    async def lifecycle(self, _app: object) -> AsyncIterator[None]:
        await self.start()
        task = asyncio.create_task(self.maintain(), name="cache-maintenance")
        self._tasks.add(task)
        yield
        await self.close()

    def problem(self) -> str | None:
        """For /readyz: why the store cannot be used, or None."""
        return self._start_problem or self.store.problem()

    # -- what may be cached ----------------------------------------------------------------

    def namespace(self, upstream: UpstreamSettings, tenant: str | None) -> str | None:
        """Where this caller's content of ``upstream`` lives, or None: do not use the cache."""
        if not (self.settings.enabled and upstream.cache and self._started):
            return None
        creds = upstream.credentials
        per_tenant = isinstance(creds, VaultCredentialsSpec) and creds.templated
        # SECURITY: per-tenant credentials see different content; so does the cache.
        return namespace_for(upstream.key, tenant, per_tenant=per_tenant)

    def usable(self) -> bool:
        return self.store.problem() is None

    def has_room(self, size: int) -> bool:
        return self.store.has_room(size)

    # -- repository links ---------------------------------------------------------------

    async def known(self, namespace: str, name: str, digest: str) -> bool:
        """Whether ``digest`` was seen in repository ``name`` (or confirmed upstream for it)."""
        if self._links.get((namespace, name, digest)):
            return True
        try:
            found = await self.store.linked(namespace, name, digest)
        except OSError:
            return False
        if found:
            self._links[(namespace, name, digest)] = True
        return found

    async def remember(self, namespace: str, name: str, digest: str) -> None:
        if self._links.get((namespace, name, digest)):
            return
        self._links[(namespace, name, digest)] = True
        try:
            await self.store.link(namespace, name, digest)
        except OSError as exc:
            log.warning("cache_link_failed", error=str(exc))

    # -- blobs --------------------------------------------------------------------------

    def cached(self, key: ContentKey) -> bool:
        return key in self.lru

    @property
    def shared(self) -> bool:
        """Other replicas publish into this store: a local miss must ask the store."""
        return bool(getattr(self.store, "shared", False))

    async def discover(self, key: ContentKey) -> bool:
        """For a shared store: whether another replica published ``key`` (then remembered)."""
        if not self.shared or key in self.lru:
            return key in self.lru
        try:
            entry = await self.store.stat(key)
        except OSError:
            return False
        if entry is None:
            return False
        self.lru.add(key, entry.size)
        self.metrics.cache_size.set(self.lru.total)
        return True

    def fill_for(self, key: ContentKey) -> Fill | None:
        return self._fills.get(key)

    def starting(self, key: ContentKey) -> asyncio.Future[Fill | None] | None:
        return self._starting.get(key)

    def claim(self, key: ContentKey) -> asyncio.Future[Fill | None]:
        """Become the one caller that asks the upstream for ``key``; others wait on the future."""
        future: asyncio.Future[Fill | None] = asyncio.get_running_loop().create_future()
        self._starting[key] = future
        return future

    def unclaim(self, key: ContentKey, fill: Fill | None) -> None:
        future = self._starting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(fill)

    async def start_fill(
        self,
        key: ContentKey,
        response: aiohttp.ClientResponse,
        upstream: str,
        lease: Lease | None = None,
    ) -> Fill:
        """Hand an open upstream 200 to a detached fill task; the caller follows the fill."""
        writer = await self.store.open_writer(key)
        if response.content_length:
            self.store.note_used(response.content_length)  # until the next free-space check
        fill = Fill(
            key,
            writer,
            size=response.content_length,
            media_type=response.headers.get("Content-Type"),
            fill_timeout=self.settings.fill_timeout,
        )
        self._fills[key] = fill
        self.metrics.cache_fills_inflight.inc()

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in response.content.iter_any():
                yield chunk

        async def ended(done: Fill) -> None:
            ok = done.error is None
            if ok:
                response.release()
            else:
                response.close()
            self._fills.pop(key, None)
            self.metrics.cache_fills_inflight.dec()
            if lease is not None:
                await lease.release()
            if done.entry is not None:
                self.lru.add(key, done.entry.size)
                self.metrics.cache_size.set(self.lru.total)
                log.info("cache_filled", digest=key.digest, bytes=done.entry.size,
                         seconds=round(time.monotonic() - done.started, 3))  # fmt: skip
                await self.evict()
            elif done.error is not None:
                if done.error.integrity:
                    self.metrics.cache_integrity_failures.labels(upstream).inc()
                    log.error("cache_integrity_failure", upstream=upstream, digest=key.digest,
                              reason=str(done.error))  # fmt: skip
                else:
                    log.warning("cache_fill_failed", upstream=upstream, digest=key.digest,
                                reason=str(done.error))  # fmt: skip

        task = asyncio.create_task(fill.run(chunks(), ended), name=f"cache-fill-{key.digest}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fill

    @contextlib.contextmanager
    def reading(self, key: ContentKey) -> Iterator[None]:
        """Pin ``key`` against eviction while a response reads it."""
        self.lru.pin(key)
        self.lru.touch(key)
        try:
            yield
        finally:
            self.lru.unpin(key)
        now = time.monotonic()
        if now - self._touched.get(key, 0.0) > TOUCH_INTERVAL:
            self._touched[key] = now
            task = asyncio.create_task(self.store.touch(key), name="cache-touch")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def forget_tag(self, upstream: UpstreamSettings, tenant: str | None, name: str,
                   reference: str) -> None:  # fmt: skip
        """A manifest was pushed or deleted through the gateway: the next pull asks again."""
        namespace = self.namespace(upstream, tenant)
        if namespace is not None:
            self.tags.drop(namespace, name, reference)

    async def forget_content(self, upstream: UpstreamSettings, tenant: str | None, kind: Kind,
                             digest: str) -> None:  # fmt: skip
        """Deleted upstream through the gateway: never answered from the cache again."""
        namespace = self.namespace(upstream, tenant)
        if namespace is None:
            return
        key = ContentKey(namespace, kind, digest)
        try:
            await self.store.delete(key)
        except OSError as exc:
            log.warning("cache_delete_failed", error=str(exc))
        self._media_types.pop(key, None)
        self.forget(key)

    def forget(self, key: ContentKey) -> None:
        """A published file vanished (purged or corrupt-removed by a command): a miss now."""
        self.lru.remove(key)
        self.metrics.cache_size.set(self.lru.total)

    async def evict(self) -> None:
        for key in self.lru.victims():
            try:
                await self.store.delete(key)
            except OSError as exc:
                log.warning("cache_evict_failed", error=str(exc))
                continue
            self._media_types.pop(key, None)
            self.metrics.cache_evictions.inc()
        self.metrics.cache_size.set(self.lru.total)

    # -- manifests ----------------------------------------------------------------------

    async def manifest(self, key: ContentKey) -> tuple[bytes, str] | None:
        """A stored manifest and its media type, or None."""
        if key not in self.lru and not await self.discover(key):
            return None
        try:
            body = await self.store.read(key)
        except OSError:
            self.forget(key)
            return None
        media_type = self._media_types.get(key) or media_type_of(body)
        self._media_types[key] = media_type
        self.lru.touch(key)
        return body, media_type

    async def put_manifest(self, key: ContentKey, body: bytes, media_type: str) -> bool:
        """Store manifest bytes under their digest; False (nothing stored) when they differ."""
        if key in self.lru or not is_cacheable(key.digest) or not self.has_room(len(body)):
            self._media_types[key] = media_type
            return key in self.lru
        writer = await self.store.open_writer(key)
        try:
            await writer.write(body)
            entry: Entry = await writer.commit()
        except DigestMismatch:
            self.metrics.cache_integrity_failures.labels(key.namespace.split("/")[0]).inc()
            return False
        except BaseException:
            await writer.abort()
            raise
        finally:
            writer.release()
        self._media_types[key] = media_type
        self.lru.add(key, entry.size)
        await self.evict()
        return True
