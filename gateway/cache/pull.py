"""The cache in the pull path: answer blob and manifest requests, asking the upstream only
when the cache cannot answer on its own.

Blobs: a published digest known to belong to the repository is a hit (sendfile, Range, HEAD).
A digest the cache holds but has not seen in this repository is confirmed with an upstream
HEAD made with this caller's credentials first (SECURITY: a private repository's layer must
not be reachable by naming its digest under another repository). A miss starts one fill per
digest; concurrent callers follow it. HEAD and Range misses go upstream unchanged.

Manifests: by digest immutable; by tag reused for ``tag_ttl``, then revalidated with a HEAD
before answering, served stale up to ``max_stale`` when the upstream fails; 404s remembered
for ``negative_ttl``. A stored manifest answers only a caller that accepts its media type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from ..cluster import tags as shared_tags
from ..cluster.fills import coordinate
from ..errors import ManifestUnknown, UpstreamError
from ..keys import CACHE_RESULT
from ..log import get_logger
from ..oci.names import looks_like_digest
from .digests import digest_of, hasher_for, is_cacheable
from .fill import Fill
from .index import TagEntry, accept_key, acceptable
from .remote import serve_object
from .responses import serve_file, serve_fill, serve_manifest
from .s3 import S3Store
from .service import Cache
from .store import ContentKey, Entry, StoreUnusable

log = get_logger(__name__)

MAX_MANIFEST = 4 << 20
STALE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Origin:
    """How this request reaches its upstream: ``send(method, reference)`` with the caller's
    credentials and headers, ``relay(response)`` answers the caller with an upstream response."""

    upstream: str
    send: Callable[[str, str], Awaitable[aiohttp.ClientResponse]]
    relay: Callable[[aiohttp.ClientResponse], Awaitable[web.StreamResponse]]


async def _forward(request: web.Request, origin: Origin, reference: str) -> web.StreamResponse:
    request[CACHE_RESULT] = request.get(CACHE_RESULT) or "miss"
    response = await origin.send(request.method, reference)
    return await origin.relay(response)


async def serve_blob(
    request: web.Request, cache: Cache, namespace: str, name: str, digest: str, origin: Origin
) -> web.StreamResponse:
    metrics = cache.metrics.cache_requests
    if not is_cacheable(digest) or not cache.usable():
        metrics.labels("blob", "bypass").inc()
        request[CACHE_RESULT] = "bypass"
        return await _forward(request, origin, digest)
    key = ContentKey(namespace, "blobs", digest)
    publishing = cache.fill_for(key)
    if publishing is not None and publishing.verified:
        # Every byte arrived and matched: the store is fsyncing/renaming it. Wait for that
        # (about a second for a large blob), then this is a hit, not a second fill.
        await publishing.settled()
    if cache.fill_for(key) is None and not cache.cached(key):
        await cache.discover(key)  # a shared store: another replica may have filled it
    if cache.cached(key) or cache.fill_for(key) is not None:
        if not await _belongs(request, cache, namespace, name, digest, origin):
            metrics.labels("blob", "miss").inc()
            return await _forward(request, origin, digest)
        if cache.cached(key):
            hit = await _serve_stored(request, cache, key)
            if hit is not None:
                return hit
    if request.method == "HEAD" or "Range" in request.headers:
        fill = cache.fill_for(key)
        if fill is not None and fill.size is not None:
            metrics.labels("blob", "hit").inc()
            return await serve_fill(request, fill, result="HIT")
        metrics.labels("blob", "miss").inc()
        return await _forward(request, origin, digest)  # end-2 HEAD / ranged GET: no fill
    joined = await _join_or_start(request, cache, key, name, origin)
    if isinstance(joined, web.StreamResponse):
        return joined
    metrics.labels("blob", "miss").inc()
    return await serve_fill(request, joined)


async def _serve_stored(
    request: web.Request, cache: Cache, key: ContentKey
) -> web.StreamResponse | None:
    """A published blob from the store, or None (it vanished: a miss after all)."""
    path = cache.store.local_path(key)
    try:
        entry = await cache.store.stat(key)
    except OSError:
        entry = None
    if entry is None:
        cache.forget(key)  # removed behind our back (purge, verify, another replica's eviction)
        return None
    cache.metrics.cache_requests.labels("blob", "hit").inc()
    with cache.reading(key):
        if path is not None:
            return await serve_file(request, path, entry.size, key.digest)
        assert isinstance(cache.store, S3Store)
        s3 = cache.settings.s3
        ttl = s3.redirect_ttl if s3.redirect else None
        return await serve_object(request, cache.store, key, entry.size, redirect_ttl=ttl)


async def _stored_if_belongs(
    request: web.Request, cache: Cache, key: ContentKey, name: str, origin: Origin
) -> web.StreamResponse | None:
    """Another replica's object, for a caller whose repository holds the digest."""
    # SECURITY: the filler may have fetched it for another repository.
    if not await _belongs(request, cache, key.namespace, name, key.digest, origin):
        return None
    return await _serve_stored(request, cache, key)


async def _belongs(
    request: web.Request, cache: Cache, namespace: str, name: str, digest: str, origin: Origin
) -> bool:
    """Seen in ``name`` before, or the upstream says so now for this caller's credentials."""
    if await cache.known(namespace, name, digest):
        return True
    response = await origin.send("HEAD", digest)
    try:
        confirmed = response.status == 200
    finally:
        response.release()
    log.info("cache_membership_checked", confirmed=confirmed)
    if confirmed:
        await cache.remember(namespace, name, digest)
    return confirmed


async def _join_or_start(
    request: web.Request, cache: Cache, key: ContentKey, name: str, origin: Origin
) -> Fill | web.StreamResponse:
    """The fill to follow: an existing one, or one this caller starts (one upstream GET)."""
    existing = cache.fill_for(key)
    pending = cache.starting(key)
    if existing is None and pending is not None:
        existing = await pending  # another caller is asking the upstream right now
        if existing is None:
            if cache.cached(key):  # another replica published it (the cluster lease)
                hit = await _stored_if_belongs(request, cache, key, name, origin)
                if hit is not None:
                    return hit
            # That caller's upstream answer was not a cacheable 200: ask for ourselves.
            return await _forward(request, origin, key.digest)
    if existing is not None:
        # SECURITY: a fill started for another repository is joined only once this
        # repository is known to hold the digest.
        if await _belongs(request, cache, key.namespace, name, key.digest, origin):
            return existing
        return await _forward(request, origin, key.digest)
    cache.claim(key)
    fill = None
    lease = None
    try:
        if cache.cluster is not None:
            outcome = await coordinate(
                cache.cluster, cache.store, key, max_wait=cache.settings.fill_timeout
            )
            if isinstance(outcome, Entry):  # another replica filled it
                cache.lru.add(key, outcome.size)
                cache.unclaim(key, None)
                hit = await _stored_if_belongs(request, cache, key, name, origin)
                if hit is not None:
                    return hit
            elif outcome is not None:
                lease = outcome
        response = await origin.send("GET", key.digest)
        if response.status != 200:
            cache.unclaim(key, None)
            return await origin.relay(response)
        size = response.content_length
        if size is None or not cache.has_room(size):
            cache.unclaim(key, None)
            cache.metrics.cache_requests.labels("blob", "bypass").inc()
            request[CACHE_RESULT] = "bypass"
            if size is not None:
                log.warning("cache_bypassed", reason="no room in the cache store", bytes=size)
            return await origin.relay(response)
        try:
            fill = await cache.start_fill(key, response, origin.upstream, lease)
            lease = None  # the fill releases it when it ends
        except (StoreUnusable, OSError) as exc:
            cache.unclaim(key, None)
            log.warning("cache_bypassed", reason=str(exc))
            request[CACHE_RESULT] = "bypass"
            return await origin.relay(response)
        await cache.remember(key.namespace, name, key.digest)
        return fill
    finally:
        cache.unclaim(key, fill)
        if lease is not None:
            await lease.release()


# -- manifests ----------------------------------------------------------------------------


async def serve_manifest_request(
    request: web.Request,
    cache: Cache,
    namespace: str,
    name: str,
    reference: str,
    accepted: list[str],
    origin: Origin,
) -> web.StreamResponse:
    accept = accept_key(accepted)
    if looks_like_digest(reference):
        return await _by_digest(request, cache, namespace, name, reference, accept, origin)
    if cache.cluster is None:
        return await _by_tag(request, cache, namespace, name, reference, accept, origin)
    adopted = await shared_tags.adopt(cache, namespace, name, reference, accept)
    response = await _by_tag(request, cache, namespace, name, reference, accept, origin)
    if not adopted:
        await shared_tags.share(cache, namespace, name, reference, accept)
    return response


async def _by_digest(
    request: web.Request, cache: Cache, namespace: str, name: str, digest: str, accept: str,
    origin: Origin,
) -> web.StreamResponse:  # fmt: skip
    metrics = cache.metrics.cache_requests
    key = ContentKey(namespace, "manifests", digest)
    if not is_cacheable(digest):
        metrics.labels("manifest", "bypass").inc()
        request[CACHE_RESULT] = "bypass"
        return await _forward(request, origin, digest)
    stored = await cache.manifest(key)
    if (
        stored is not None
        and acceptable(stored[1], accept)
        and await _belongs(request, cache, namespace, name, digest, origin)
    ):
        metrics.labels("manifest", "hit").inc()
        return serve_manifest(request, stored[0], digest, stored[1], result="HIT")
    metrics.labels("manifest", "miss").inc()
    if request.method == "HEAD":
        return await _forward(request, origin, digest)
    response = await origin.send("GET", digest)
    fetched = await _read_manifest(response)
    if fetched is None:
        return await origin.relay(response)
    body, media_type = fetched
    hasher = hasher_for(digest)
    hasher.update(body)
    if f"{hasher.name}:{hasher.hexdigest()}" != digest:
        cache.metrics.cache_integrity_failures.labels(origin.upstream).inc()
        log.error("cache_integrity_failure", upstream=origin.upstream, digest=digest)
        raise UpstreamError("the upstream's manifest does not match its digest",
                            detail={"digest": digest})  # fmt: skip
    await _store(cache, key, name, body, media_type)
    return serve_manifest(request, body, digest, media_type, result="MISS")


async def _read_manifest(response: aiohttp.ClientResponse) -> tuple[bytes, str] | None:
    """Body and media type of an upstream 200 small enough to keep; None leaves it unread."""
    length = response.content_length
    if response.status != 200 or (length is not None and length > MAX_MANIFEST):
        return None
    try:
        body = await response.content.read(MAX_MANIFEST + 1)
    finally:
        response.release()
    if len(body) > MAX_MANIFEST:
        raise UpstreamError("upstream manifest too large to relay")
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    return body, media_type or "application/octet-stream"


async def _store(cache: Cache, key: ContentKey, name: str, body: bytes, media_type: str) -> None:
    try:
        if await cache.put_manifest(key, body, media_type):
            await cache.remember(key.namespace, name, key.digest)
    except OSError as exc:
        log.warning("cache_store_failed", kind="manifest", error=str(exc))


async def _by_tag(
    request: web.Request, cache: Cache, namespace: str, name: str, tag: str, accept: str,
    origin: Origin,
) -> web.StreamResponse:  # fmt: skip
    metrics = cache.metrics.cache_requests
    settings = cache.settings
    tags = cache.tags
    entry = tags.get(namespace, name, tag, accept)
    stored = None
    if entry is not None:
        stored = await cache.manifest(ContentKey(namespace, "manifests", entry.digest))
        if stored is None or not acceptable(stored[1], accept):
            entry, stored = None, None
    if entry is not None and stored is not None and tags.age(entry) < settings.tag_ttl:
        metrics.labels("manifest", "hit").inc()
        return serve_manifest(request, stored[0], entry.digest, stored[1], result="HIT")
    if entry is None and tags.known_missing(namespace, name, tag, accept):
        metrics.labels("manifest", "hit").inc()
        request[CACHE_RESULT] = "hit"
        raise ManifestUnknown(detail={"tag": tag}, headers={"X-Cache": "HIT"})
    if entry is not None and stored is not None:
        # Past tag_ttl: revalidate before answering (a HEAD, not counted by Docker Hub).
        try:
            response = await origin.send("HEAD", tag)
        except UpstreamError as exc:
            return _stale_or_raise(request, cache, entry, stored, exc)
        status = response.status
        upstream_digest = response.headers.get("Docker-Content-Digest")
        if status == 200 and upstream_digest == entry.digest:
            response.release()
            tags.confirm(entry)
            metrics.labels("manifest", "revalidated").inc()
            return serve_manifest(request, stored[0], entry.digest, stored[1], result="HIT")
        if status in STALE_STATUSES:
            response.release()
            return _stale_or_raise(request, cache, entry, stored, None, status)
        if status == 404:
            tags.drop(namespace, name, tag)
            tags.remember_missing(namespace, name, tag, accept, settings.negative_ttl)
        if status != 200 or request.method == "HEAD":
            return await origin.relay(response)
        response.release()
        tags.drop(namespace, name, tag)  # the tag moved: fetch the new manifest below
    metrics.labels("manifest", "miss").inc()
    if request.method == "HEAD":
        request[CACHE_RESULT] = "miss"
        response = await origin.send("HEAD", tag)
        if response.status == 404:
            tags.remember_missing(namespace, name, tag, accept, settings.negative_ttl)
        await _note_head(cache, namespace, name, tag, accept, response)
        return await origin.relay(response)
    response = await origin.send("GET", tag)
    if response.status == 404:
        tags.remember_missing(namespace, name, tag, accept, settings.negative_ttl)
    declared = response.headers.get("Docker-Content-Digest")
    fetched = await _read_manifest(response)
    if fetched is None:
        return await origin.relay(response)
    body, media_type = fetched
    algorithm = declared.split(":")[0] if declared and is_cacheable(declared) else "sha256"
    digest = digest_of(body, algorithm)
    if declared and declared != digest:
        cache.metrics.cache_integrity_failures.labels(origin.upstream).inc()
        log.error("cache_integrity_failure", upstream=origin.upstream, digest=declared)
        raise UpstreamError("the upstream's manifest does not match its digest",
                            detail={"digest": declared})  # fmt: skip
    if acceptable(media_type, accept):
        await _store(cache, ContentKey(namespace, "manifests", digest), name, body, media_type)
        tags.put(namespace, name, tag, accept, digest, media_type)
    return serve_manifest(request, body, digest, media_type, result="MISS")


async def _note_head(
    cache: Cache, namespace: str, name: str, tag: str, accept: str,
    response: aiohttp.ClientResponse,
) -> None:  # fmt: skip
    """An upstream HEAD naming a manifest the cache holds for this repository: remember the
    tag, so the next HEAD or GET within tag_ttl needs no upstream request (docker, containerd
    resolve a tag with a HEAD, then GET by digest)."""
    digest = response.headers.get("Docker-Content-Digest")
    if response.status != 200 or not digest or not is_cacheable(digest):
        return
    stored = await cache.manifest(ContentKey(namespace, "manifests", digest))
    if stored is None or not acceptable(stored[1], accept):
        return
    if await cache.known(namespace, name, digest):
        cache.tags.put(namespace, name, tag, accept, digest, stored[1])


def _stale_or_raise(
    request: web.Request,
    cache: Cache,
    entry: TagEntry,
    stored: tuple[bytes, str],
    error: UpstreamError | None,
    status: int | None = None,
) -> web.StreamResponse:
    assert isinstance(entry, TagEntry)
    age = cache.tags.age(entry)
    if age > cache.settings.tag_ttl + cache.settings.max_stale:
        if error is not None:
            raise error
        raise UpstreamError(f"upstream answered {status} and the cached tag is too old",
                            detail={"upstream_status": status})  # fmt: skip
    cache.metrics.cache_requests.labels("manifest", "stale").inc()
    log.warning("cache_served_stale", digest=entry.digest, age=round(age, 1),
                upstream_status=status, error=str(error) if error else None)  # fmt: skip
    return serve_manifest(request, stored[0], entry.digest, stored[1], result="STALE")
