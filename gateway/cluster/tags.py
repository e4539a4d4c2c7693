"""One tag revalidation per ``tag_ttl`` for the whole cluster.

Before a replica answers a tag whose own answer is missing or older than ``tag_ttl``, it looks
for a fresher answer another replica put in Redis (its age travels with it) and adopts it when
the manifest is in the shared store. Otherwise it claims the revalidation for a few seconds;
a replica that finds it claimed waits briefly for that answer instead of asking the upstream
too. After answering, a replica that asked the upstream itself shares what it learnt.
Redis failing: every replica revalidates on its own, as alone.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..cache.service import Cache
from ..cache.store import ContentKey
from .coordinator import ClusterUnavailable

CLAIM_WAIT = 2.0
POLL = 0.1


async def adopt(cache: Cache, namespace: str, name: str, tag: str, accept: str) -> bool:
    """Take a fresh answer from another replica into the local tag index; True if taken."""
    cluster, tags, ttl = cache.cluster, cache.tags, cache.settings.tag_ttl
    assert cluster is not None
    entry = tags.get(namespace, name, tag, accept)
    if entry is not None and tags.age(entry) < ttl:
        return False
    key = cluster.tag_name(namespace, name, tag, accept)
    loop = asyncio.get_running_loop()
    try:
        shared = await cluster.tag_get(key)
        if shared is None or shared[2] >= ttl:
            if await cluster.tag_claim(key, ttl):
                return False  # ours to ask the upstream
            deadline = loop.time() + CLAIM_WAIT
            while loop.time() < deadline:
                await asyncio.sleep(POLL)
                shared = await cluster.tag_get(key)
                if shared is not None and shared[2] < ttl:
                    break
            else:
                return False
    except ClusterUnavailable:
        return False
    assert shared is not None
    digest, media_type, age = shared
    if await cache.manifest(ContentKey(namespace, "manifests", digest)) is None:
        return False
    tags.put(namespace, name, tag, accept, digest, media_type)
    adopted = tags.get(namespace, name, tag, accept)
    if adopted is not None:
        adopted.checked = tags.clock() - age  # as old as the other replica's answer
    return True


async def share(cache: Cache, namespace: str, name: str, tag: str, accept: str) -> None:
    """After this replica asked the upstream: put its fresh answer where the others look."""
    cluster, tags = cache.cluster, cache.tags
    assert cluster is not None
    entry = tags.get(namespace, name, tag, accept)
    if entry is None or tags.age(entry) > 1.0:
        return  # answered stale or from an older answer: nothing new to share
    key = cluster.tag_name(namespace, name, tag, accept)
    with contextlib.suppress(ClusterUnavailable):
        await cluster.tag_put(key, entry.digest, entry.media_type, cache.settings.tag_ttl)
