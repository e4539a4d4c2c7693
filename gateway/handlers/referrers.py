"""end-12a/12b: ``GET /v2/<name>/referrers/<digest>``, optionally filtered by artifactType."""

from __future__ import annotations

from aiohttp import web

from ..keys import ROUTE
from .blobs import validate_digest
from .pull import admit, answer, from_upstream, get_only, pull_only


async def referrers(request: web.Request) -> web.StreamResponse:
    """The referrers index for a digest; only ``artifactType`` goes upstream."""
    pull_only(request)
    request[ROUTE] = "referrers"
    get_only(request)
    digest = request.match_info["digest"]
    target = await admit(request, lambda: validate_digest(digest))
    query = [(k, v) for k, v in request.query.items() if k == "artifactType"]
    response = await from_upstream(request, target, "referrers", f"referrers/{digest}", query=query)
    return await answer(request, target, "referrers", response, paginated=True)
