"""Header policy for writes: what a push sends upstream and what its answer tells the caller.

Like gateway.upstream.headers, both directions are allow-lists. Upload progress (``Range``)
and ``Content-Range`` pass; ``Location`` and ``Docker-Upload-UUID`` never pass as they are:
an upload's location becomes the caller's own upload id, a created blob or manifest is named
by its digest in the caller's path space.
"""

from __future__ import annotations

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..upstream.headers import caller_response_headers

# What the upstream must see of a write: the body's type and extent (end-5 Content-Range).
_FORWARD_WRITE = ("Content-Type", "Content-Range")


def write_request_headers(
    caller: CIMultiDictProxy[str], user_agent: str, *, streamed: bool
) -> CIMultiDict[str]:
    """Headers for the upstream write; ``Content-Length`` only for a streamed caller body."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name in _FORWARD_WRITE:
        if (value := caller.get(name)) is not None:
            headers[name] = value
    if streamed and (length := caller.get("Content-Length")) is not None and length.isdigit():
        # distribution checks Content-Length against Content-Range on a chunked PATCH (end-5).
        headers["Content-Length"] = length
    headers["User-Agent"] = user_agent
    return headers


def write_response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """Relayed headers of a write's answer, before ``Location`` is put back in our terms."""
    headers = caller_response_headers(upstream)
    headers.popall("Content-Length", None)  # the gateway sets its own body
    # end-5/end-13: "Range: 0-<offset>" reports how much of the upload the upstream holds.
    if (progress := upstream.get("Range")) is not None:
        headers["Range"] = progress
    return headers


def location_path(location: str, upstream_url: URL) -> str:
    """The part of an upstream ``Location`` the gateway keeps: path and query under its URL.

    SECURITY: the host a Location names is dropped. A session is always continued at the
    configured upstream URL, so an upstream (or anyone altering its answers) cannot make the
    gateway send credentials elsewhere.
    """
    url = URL(location)
    prefix = upstream_url.path.rstrip("/")
    path = url.raw_path
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    return f"{path}?{url.raw_query_string}" if url.raw_query_string else path


def split_location(kept: str) -> tuple[str, list[tuple[str, str]]]:
    """A kept location back into the path and query the upstream client sends."""
    url = URL(kept, encoded=True)
    return url.path, list(url.query.items())
