"""One upstream fetch per digest across replicas: a Redis lease decides who fills.

The replica that takes the lease fills (and renews the lease while it does). The others do
not stream around it: an S3 object cannot be read before its multipart upload completes, and
a second upstream fetch is what the lease exists to prevent. They poll for the published
object and serve it from the store; when the lease vanishes without an object (the filler
died), the first to notice takes the lease over and fills. They wait at most ``max_wait``
(``cache.fill_timeout``) and then fetch from the upstream themselves. Redis or the store
failing: go on alone (the caller fills or streams on its own).
"""

from __future__ import annotations

import asyncio

from ..cache.store import ContentKey, Entry, Store
from ..log import get_logger
from .coordinator import Cluster, ClusterUnavailable, Lease

log = get_logger(__name__)

POLL = 0.25


async def coordinate(
    cluster: Cluster, store: Store, key: ContentKey, *, max_wait: float
) -> Lease | Entry | None:
    """A Lease (fill it), the Entry another replica published, or None (go on alone)."""
    name = cluster.lease_name(key.namespace, key.digest)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait
    waited = False
    try:
        while True:
            try:
                lease = await cluster.acquire(name)
            except ClusterUnavailable:
                return None
            if lease is not None:
                entry = await store.stat(key) if waited else None
                if entry is not None:  # published between our miss and the lease
                    await lease.release()
                    return entry
                if waited:
                    log.info("cluster_fill_taken_over", digest=key.digest)
                return lease
            waited = True
            while True:
                await asyncio.sleep(POLL)
                entry = await store.stat(key)
                if entry is not None:
                    return entry
                try:
                    held = await cluster.held(name)
                except ClusterUnavailable:
                    return None
                if not held:
                    break  # the filler is gone: take over
                if loop.time() > deadline:
                    log.warning("cluster_fill_wait_expired", digest=key.digest)
                    return None
    except OSError:  # the store did not answer: the pull path streams around it
        return None
