"""The steps every pull endpoint shares: admit, ask the upstream, answer.

A handler reads top to bottom: ``admit`` (route the name, validate the argument, authorize),
then a body source (today the upstream; a cache goes in front of it in the manifest and blob
handlers), then ``answer`` (relay it to the caller). Each step returns a value; only the
handler records what the request line needs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from aiohttp import ClientResponse, web
from yarl import URL

from ..access.gatekeeper import Decision
from ..access.quota import limit
from ..cache.pull import Origin
from ..cache.service import Cache
from ..errors import Denied, NameUnknown, Unsupported
from ..keys import (
    ACCESS_KEY,
    CACHE_KEY,
    EXCHANGE,
    METRICS_KEY,
    NAME,
    PASSTHROUGH_KEY,
    PRINCIPAL,
    RELAYED,
    ROUTER_KEY,
    SENT,
    SETTINGS_KEY,
    TENANT,
    UPSTREAM,
    UPSTREAM_KEY,
    VIA,
)
from ..metrics import SentBytes
from ..oci.scope import pull_scope
from ..routing import Route, Target
from ..upstream.auth import Exchange, UpstreamRequest
from ..upstream.client import USER_AGENT
from ..upstream.headers import upstream_request_headers
from ..upstream.relay import LinkContext, relay

_ERROR_BODY_LIMIT = 64 * 1024
PULL_METHODS = ("GET", "HEAD")


def pull_only(request: web.Request) -> None:
    """Refuse methods a pull endpoint lacks (writes have their own routes, handlers/push.py)."""
    if request.method not in PULL_METHODS:
        raise Unsupported(
            f"{request.method} is not supported on this endpoint",
            headers={"Allow": "GET, HEAD"},
        )


def get_only(request: web.Request) -> None:
    """HEAD on an endpoint the spec defines for GET only (tags/list, referrers)."""
    if request.method != "GET":
        raise Unsupported("HEAD is not defined for this endpoint", headers={"Allow": "GET"})


def admit_caller(request: web.Request, decision: Decision) -> None:
    """Record who is calling (the tenant picks upstream credentials), then allow or refuse."""
    request[PRINCIPAL] = decision.principal.name
    request[TENANT] = decision.principal.tenant
    decision.enforce()


async def route_caller(request: web.Request) -> Target:
    """Route the caller's name to an upstream and record it for the request line."""
    try:
        target = request.app[ROUTER_KEY].route(
            request.match_info["name"], ns=request.query.get("ns"), host=request.host
        )
    except NameUnknown:
        # Only a caller who may use /v2/ at all learns which upstreams are configured:
        # an unauthenticated one gets the challenge first.
        admit_caller(request, await request.app[ACCESS_KEY].check(request, None))
        raise
    request[UPSTREAM] = target.upstream
    request[VIA] = target.via
    request[NAME] = target.name
    return target


async def admit(request: web.Request, validate: Callable[[], None]) -> Target:
    """Route the caller's name to an upstream, validate the argument, authorize the pull."""
    target = await route_caller(request)
    validate()
    admit_caller(request, await request.app[ACCESS_KEY].check(request, target))
    await limit(request)
    return target


async def from_upstream(
    request: web.Request,
    target: Target,
    route: Route,
    path: str,
    *,
    accept: list[str] | None = None,
    query: list[tuple[str, str]] | None = None,
    method: str | None = None,
) -> ClientResponse:
    """Send the pull (as ``method``, default the caller's) to the upstream; its open response,
    never an upstream 401."""
    app = request.app
    upstream = app[SETTINGS_KEY].upstreams[target.upstream]
    url = URL(f"{upstream.url}/v2/{target.name}/{path}")
    exchange = request[EXCHANGE] = Exchange()
    response = await app[UPSTREAM_KEY].send(
        UpstreamRequest(
            upstream,
            method or request.method,
            url.with_query(query) if query else url,
            upstream_request_headers(request.headers, accept, USER_AGENT),
            scopes=(str(pull_scope(target.name)),),
            tenant=request.get(TENANT),
            route=route,
        ),
        exchange,
    )
    if response.status == 401:
        raise await _refused_upstream(response, target.upstream)
    return response


async def answer(
    request: web.Request,
    target: Target,
    route: Route,
    response: ClientResponse,
    *,
    paginated: bool = False,
) -> web.StreamResponse:
    """Relay the upstream response; bytes are counted into the request's SentBytes as written."""
    app = request.app
    ns = request.query.get("ns")
    link = None
    if paginated:
        upstream_url = app[SETTINGS_KEY].upstreams[target.upstream].url
        link = LinkContext(upstream_url, target.name, target.caller_name, ns)
    sent = request[SENT] = SentBytes(app[METRICS_KEY].bytes_sent.labels(target.upstream, route))
    try:
        relayed = await relay(
            request,
            response,
            sent=sent,
            pump=app[PASSTHROUGH_KEY],
            link=link,
            ns=ns,
            read_timeout=app[SETTINGS_KEY].timeouts.read,
        )
    finally:
        response.release()  # no-op after a full read; drops a half-read connection
    request[RELAYED] = relayed
    return relayed.response


def cache_origin(
    request: web.Request, target: Target, route: Route, *, accept: list[str] | None = None
) -> tuple[Cache, str, Origin] | None:
    """The cache, this caller's namespace in it and the way upstream, when the cache applies."""
    cache = request.app[CACHE_KEY]
    upstream = request.app[SETTINGS_KEY].upstreams[target.upstream]
    namespace = cache.namespace(upstream, request.get(TENANT))
    if namespace is None:
        return None
    folder = "blobs" if route == "blob" else "manifests"

    async def send(method: str, reference: str) -> ClientResponse:
        path = f"{folder}/{reference}"
        return await from_upstream(request, target, route, path, accept=accept, method=method)

    async def relay_answer(response: ClientResponse) -> web.StreamResponse:
        return await answer(request, target, route, response)

    return cache, namespace, Origin(target.upstream, send, relay_answer)


async def _refused_upstream(response: ClientResponse, upstream: str) -> Denied:
    """The upstream still says 401 after the gateway authenticated as well as it can.

    Relaying a 401 would tell the caller to authenticate to the gateway (and its challenge
    names the upstream's realm, which is not the caller's business): it is a 403 for them.
    The upstream's own error entries go into the detail (e.g. Docker Hub's "repository does
    not exist or may require authorization").
    """
    try:
        body = await response.content.read(_ERROR_BODY_LIMIT)
    finally:
        response.release()
    errors = None
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
            errors = parsed["errors"][:5]
    detail = {"upstream": upstream, "upstream_status": 401, "upstream_errors": errors}
    return Denied("the upstream registry refused access to this repository", detail=detail)
