"""end-2: ``GET``/``HEAD /v2/<name>/blobs/<digest>``."""

from __future__ import annotations

from aiohttp import web

from ..errors import DigestInvalid
from ..keys import ROUTE
from ..oci.names import is_valid_digest
from .pull import admit, answer, from_upstream, pull_only


def validate_digest(digest: str) -> None:
    """DIGEST_INVALID unless ``digest`` follows the digest grammar."""
    if not is_valid_digest(digest):
        raise DigestInvalid(detail={"digest": digest})


async def blob(request: web.Request) -> web.StreamResponse:
    """A blob by digest; Range and conditional headers pass through, the body streams."""
    pull_only(request)
    request[ROUTE] = "blob"
    digest = request.match_info["digest"]
    target = await admit(request, lambda: validate_digest(digest))
    response = await from_upstream(request, target, "blob", f"blobs/{digest}")
    return await answer(request, target, "blob", response)
