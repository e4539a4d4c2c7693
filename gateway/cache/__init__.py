"""The content-addressed pull-through cache (CONTRACT "Cache").

The manifest and blob handlers ask :mod:`.pull` before the upstream; it answers from the store
or reaches the upstream through the handler's own :class:`~.pull.Origin`. One concept each:

- ``store``: the store protocol (the filesystem store now; an object store implements it too)
- ``filesystem``: one plain file per object, temp file while hashing, atomic rename on a match
- ``fill``: one upstream fetch per digest, followed by every caller, last byte after the check
- ``index``: tag → digest per Accept set, freshness, remembered 404s, media types
- ``eviction``: LRU accounting with high/low watermarks, pinned while read
- ``service``: the per-app ``Cache`` tying them together (lifecycle, links, fills, metrics)
- ``pull``: the request flow for blobs and manifests; ``responses``: the HTTP answers
- ``ranges``: single byte ranges; ``digests``: which hash checks a digest
- ``commands``: ``registry-gateway cache stats|purge|verify``
"""
