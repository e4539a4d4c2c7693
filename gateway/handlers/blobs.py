"""end-2: ``GET``/``HEAD /v2/<name>/blobs/<digest>``."""

from __future__ import annotations

from aiohttp import web

from ..cache.pull import serve_blob
from ..errors import DigestInvalid
from ..keys import ROUTE
from ..oci.names import is_valid_digest
from .pull import admit, answer, cache_origin, from_upstream, pull_only


def validate_digest(digest: str) -> None:
    """DIGEST_INVALID unless ``digest`` follows the digest grammar."""
    if not is_valid_digest(digest):
        raise DigestInvalid(detail={"digest": digest})


async def blob(request: web.Request) -> web.StreamResponse:
    """A blob by digest: from the cache when it applies, else Range and conditional headers
    pass through and the body streams."""
    pull_only(request)
    request[ROUTE] = "blob"
    digest = request.match_info["digest"]
    target = await admit(request, lambda: validate_digest(digest))
    if cached := cache_origin(request, target, "blob"):
        cache, namespace, origin = cached
        return await serve_blob(request, cache, namespace, target.name, digest, origin)
    response = await from_upstream(request, target, "blob", f"blobs/{digest}")
    return await answer(request, target, "blob", response)
