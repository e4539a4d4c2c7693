"""Manifest push (end-7) and the deletes (end-9 manifests, end-10 blobs).

A manifest is the one body the gateway reads whole: it is small, bounded by
``limits.max_manifest_size`` (413 past it), and may have to be sent twice (after an upstream
401). Each accepted manifest write is handed to the push service's hooks (the cache's entry
point for "a pushed tag is seen by the next pull at once").
"""

from __future__ import annotations

from aiohttp import web

from ..keys import METRICS_KEY, PUSH_KEY, ROUTE, TENANT
from ..push.relay import read_manifest
from ..push.service import BlobDeleted, ManifestWritten
from .blobs import validate_digest
from .manifests import validate_reference
from .push import admit_write, answer_write, to_upstream


async def put_manifest(request: web.Request) -> web.StreamResponse:
    """end-7: ``PUT /v2/<name>/manifests/<reference>``; ``OCI-Subject`` comes back relayed."""
    request[ROUTE] = "manifest"
    reference = request.match_info["reference"]
    target = await admit_write(request, "push", lambda: validate_reference(reference))
    push = request.app[PUSH_KEY]
    body = await read_manifest(request.content, request.content_length, push.max_manifest_size)
    request.app[METRICS_KEY].upload_bytes.labels(target.upstream).inc(len(body))
    response = await to_upstream(
        request, target, "manifest", "PUT", f"/v2/{target.name}/manifests/{reference}",
        action="push", data=body,
    )  # fmt: skip
    answer = await answer_write(
        request, target, response, action="push", created="manifest", reference=reference,
        uploaded=len(body),
    )  # fmt: skip
    if answer.status == 201:
        await push.manifest_written(
            ManifestWritten(target.upstream, request.get(TENANT), target.name, reference,
                            answer.headers.get("Docker-Content-Digest"))
        )  # fmt: skip
    return answer


async def delete_manifest(request: web.Request) -> web.StreamResponse:
    """end-9: ``DELETE /v2/<name>/manifests/<reference>``, where the upstream allows it."""
    request[ROUTE] = "manifest"
    reference = request.match_info["reference"]
    target = await admit_write(request, "delete", lambda: validate_reference(reference))
    response = await to_upstream(
        request, target, "manifest", "DELETE", f"/v2/{target.name}/manifests/{reference}",
        action="delete",
    )  # fmt: skip
    answer = await answer_write(
        request, target, response, action="delete", created=None, reference=reference
    )
    if 200 <= answer.status < 300:
        digest = reference if ":" in reference else None
        await request.app[PUSH_KEY].manifest_written(
            ManifestWritten(target.upstream, request.get(TENANT), target.name, reference,
                            digest, deleted=True)
        )  # fmt: skip
    return answer


async def delete_blob(request: web.Request) -> web.StreamResponse:
    """end-10: ``DELETE /v2/<name>/blobs/<digest>``, where the upstream allows it."""
    request[ROUTE] = "blob"
    digest = request.match_info["digest"]
    target = await admit_write(request, "delete", lambda: validate_digest(digest))
    response = await to_upstream(
        request, target, "blob", "DELETE", f"/v2/{target.name}/blobs/{digest}", action="delete"
    )
    answer = await answer_write(
        request, target, response, action="delete", created=None, reference=digest
    )
    if 200 <= answer.status < 300:
        await request.app[PUSH_KEY].blob_deleted(
            BlobDeleted(target.upstream, request.get(TENANT), target.name, digest)
        )
    return answer
