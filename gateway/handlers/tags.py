"""end-8a/8b: ``GET /v2/<name>/tags/list`` with ``n`` and ``last`` pagination."""

from __future__ import annotations

from aiohttp import web

from ..errors import PaginationInvalid
from ..keys import ROUTE
from .pull import admit, answer, from_upstream, get_only, pull_only


def tags_query(request: web.Request) -> list[tuple[str, str]]:
    """The pagination parameters that go upstream; PAGINATION_NUMBER_INVALID for a bad ``n``."""
    n = request.query.get("n")
    if n is not None and (not n.isdigit() or len(n) > 9):
        raise PaginationInvalid(detail={"n": n})
    return [(k, v) for k, v in request.query.items() if k in ("n", "last")]


async def tags(request: web.Request) -> web.StreamResponse:
    """The upstream's tag list; its ``Link`` for the next page is mapped into our paths."""
    pull_only(request)
    request[ROUTE] = "tags"
    get_only(request)
    target = await admit(request, lambda: None)
    response = await from_upstream(request, target, "tags", "tags/list", query=tags_query(request))
    return await answer(request, target, "tags", response, paginated=True)
