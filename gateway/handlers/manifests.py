"""end-3: ``GET``/``HEAD /v2/<name>/manifests/<reference>``."""

from __future__ import annotations

from aiohttp import web

from ..cache.pull import serve_manifest_request
from ..errors import DigestInvalid, TagInvalid
from ..keys import ROUTE
from ..oci.media import manifest_accept
from ..oci.names import is_valid_digest, is_valid_tag, looks_like_digest
from .pull import admit, answer, cache_origin, from_upstream, pull_only


def validate_reference(reference: str) -> None:
    """A reference is a digest (when it looks like one) or a tag; DIGEST_INVALID / TAG_INVALID."""
    if looks_like_digest(reference):
        if not is_valid_digest(reference):
            raise DigestInvalid(detail={"digest": reference})
    elif not is_valid_tag(reference):
        raise TagInvalid(detail={"tag": reference})


async def manifest(request: web.Request) -> web.StreamResponse:
    """A manifest by tag or digest, with the caller's Accept narrowed to manifest types."""
    pull_only(request)
    request[ROUTE] = "manifest"
    reference = request.match_info["reference"]
    target = await admit(request, lambda: validate_reference(reference))
    accept = manifest_accept(request.headers.getall("Accept", []))
    if cached := cache_origin(request, target, "manifest", accept=accept):
        cache, namespace, origin = cached
        return await serve_manifest_request(
            request, cache, namespace, target.name, reference, accept, origin
        )
    response = await from_upstream(
        request, target, "manifest", f"manifests/{reference}", accept=accept
    )
    return await answer(request, target, "manifest", response)
