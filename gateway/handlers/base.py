"""``/v2/`` (end-1) and every other path under it that is no registry endpoint."""

from __future__ import annotations

from aiohttp import web

from ..access.quota import limit
from ..errors import API_VERSION_HEADER, EndpointUnknown, Unsupported
from ..keys import ACCESS_KEY, ROUTE
from .pull import admit_caller, pull_only


async def base(request: web.Request) -> web.StreamResponse:
    """end-1: the API version check; also how callers discover the challenge (no scope)."""
    pull_only(request)
    request[ROUTE] = "base"
    admit_caller(request, await request.app[ACCESS_KEY].check(request, None))
    await limit(request)
    return web.json_response({}, headers=API_VERSION_HEADER)


async def unknown(request: web.Request) -> web.StreamResponse:
    """A path under ``/v2/`` that matches no endpoint (the catalog is not offered)."""
    pull_only(request)
    if request.match_info.get("tail", "").startswith("_catalog"):
        raise Unsupported("the gateway does not offer a catalog")
    raise EndpointUnknown(detail={"path": "/v2/" + request.match_info.get("tail", "")})
