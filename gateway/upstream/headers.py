"""Header policy, in one place: what goes upstream, what comes back, and what is rewritten.

Both directions are allow-lists. A caller's ``Authorization`` or ``Cookie`` never goes upstream
and upstream ``WWW-Authenticate``/``Set-Cookie`` never reach the caller: each side of the
gateway authenticates separately: a caller's token is issued for the gateway's service, ours
for the upstream's (distribution auth/token.md, `service`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict
from yarl import URL

# Request headers a caller may send that the upstream should see.
_FORWARD_REQUEST = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match")

# Response headers relayed to the caller as they are.
_RELAY_RESPONSE = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Content-Encoding",
    "Accept-Ranges",
    "Docker-Content-Digest",
    "ETag",
    "Last-Modified",
    "Cache-Control",
    "Expires",
    "Retry-After",
    "OCI-Filters-Applied",
    "OCI-Subject",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "Warning",
)

_LINK_RE = re.compile(r"<([^>]*)>(.*)")


def upstream_request_headers(
    caller: CIMultiDictProxy[str], accept: Iterable[str] | None, user_agent: str
) -> CIMultiDict[str]:
    """Headers for the upstream request: allow-listed caller headers plus our own."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name in _FORWARD_REQUEST:
        for value in caller.getall(name, []):
            headers.add(name, value)
    for value in accept if accept is not None else caller.getall("Accept", []):
        headers.add("Accept", value)
    headers["User-Agent"] = user_agent
    return headers


def caller_response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Headers relayed back; hop-by-hop, auth challenges and upstream identity dropped."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name in _RELAY_RESPONSE:
        for value in upstream.getall(name, []):
            headers.add(name, value)
    headers["Docker-Distribution-API-Version"] = "registry/2.0"
    return headers


def rewrite_link(
    value: str,
    *,
    upstream_url: URL,
    upstream_name: str,
    caller_name: str,
    ns: str | None,
) -> str | None:
    """Map an upstream pagination ``Link`` into the gateway's own path space.

    ``</v2/library/alpine/tags/list?last=b&n=2>; rel="next"`` for a caller that asked for
    ``/v2/docker.io/alpine/tags/list`` becomes ``</v2/docker.io/alpine/tags/list?...>``.
    Returns None for a link that does not point into this repository upstream.
    """
    match = _LINK_RE.match(value.strip())
    if not match:
        return None
    target, params = match.groups()
    url = URL(target)
    if url.is_absolute() and url.origin() != upstream_url.origin():
        return None
    prefix = f"{upstream_url.path.rstrip('/')}/v2/{upstream_name}/"
    if not url.path.startswith(prefix):
        return None
    path = f"/v2/{caller_name}/{url.path[len(prefix) :]}"
    query = MultiDict(url.query)
    if ns is not None:
        query["ns"] = ns
    local = URL.build(path=path, query=query, encoded=False)
    return f"<{local}>{params}"
