"""The OCI pull API (end-1, end-2, end-3, end-8, end-12) under ``/v2/``.

One dispatcher parses the path (names may hold slashes, so aiohttp's router cannot split them),
validates the name and reference, routes to an upstream, and relays what comes back.
"""

from __future__ import annotations

import contextlib
import json

from aiohttp import ClientResponse, web

from ..access.gatekeeper import Decision
from ..access.quota import charge, limit
from ..cache.pull import Origin, serve_blob, serve_manifest_request
from ..errors import (
    API_VERSION_HEADER,
    Denied,
    DigestInvalid,
    NameUnknown,
    PaginationInvalid,
    RegistryError,
    Unsupported,
)
from ..keys import (
    ACCESS_KEY,
    CACHE_KEY,
    EXCHANGE,
    NAME,
    PRINCIPAL,
    ROUTE,
    ROUTER_KEY,
    SETTINGS_KEY,
    TENANT,
    UPSTREAM,
    UPSTREAM_KEY,
    VIA,
)
from ..oci.media import manifest_accept
from ..oci.names import is_valid_digest, is_valid_tag, looks_like_digest
from ..oci.scope import pull_scope
from ..upstream.client import USER_AGENT, Exchange
from ..upstream.headers import upstream_request_headers
from ..upstream.relay import LinkContext, relay
from ..upstream.routing import ApiPath, Target, parse_api_path

_ERROR_BODY_LIMIT = 64 * 1024
CACHED = ("blob", "manifest")


class TagInvalid(RegistryError):
    code, status, default_message = "TAG_INVALID", 400, "invalid tag"


async def v2(request: web.Request) -> web.StreamResponse:
    """Everything under ``/v2/``: GET and HEAD only (the gateway is pull-only)."""
    if request.method not in ("GET", "HEAD"):
        # Push (uploads, manifest PUT) and delete: refused before the path is even parsed.
        raise Unsupported(
            f"{request.method} is not supported: the gateway is pull-only",
            headers={"Allow": "GET, HEAD"},
        )
    api = parse_api_path(request.match_info.get("tail", ""))
    request[ROUTE] = api.route
    if api.route == "base":  # end-1; also how clients discover the challenge (no scope)
        _admit(request, await request.app[ACCESS_KEY].check(request, None))
        await limit(request)
        return web.json_response({}, headers=API_VERSION_HEADER)
    if api.route in ("tags", "referrers") and request.method == "HEAD":
        raise Unsupported("HEAD is not defined for this endpoint", headers={"Allow": "GET"})
    ns = request.query.get("ns")
    try:
        target = request.app[ROUTER_KEY].route(api.name, ns=ns, host=request.host)
    except NameUnknown:
        # Only a caller who may use /v2/ at all learns which upstreams are configured:
        # an unauthenticated one gets the challenge first.
        _admit(request, await request.app[ACCESS_KEY].check(request, None))
        raise
    request[UPSTREAM] = target.upstream
    request[VIA] = target.via
    request[NAME] = target.name
    _validate(api)
    _admit(request, await request.app[ACCESS_KEY].check(request, target))
    await limit(request)
    try:
        return await _proxy(request, api, target, ns)
    finally:
        await charge(request)


def _admit(request: web.Request, decision: Decision) -> None:
    """Record who is calling (the tenant picks upstream credentials), then allow or refuse."""
    request[PRINCIPAL] = decision.principal.name
    request[TENANT] = decision.principal.tenant
    decision.enforce()


def _validate(api: ApiPath) -> None:
    if api.route == "manifest":
        if looks_like_digest(api.arg):
            if not is_valid_digest(api.arg):
                raise DigestInvalid(detail={"digest": api.arg})
        elif not is_valid_tag(api.arg):
            raise TagInvalid(detail={"tag": api.arg})
    elif api.route in ("blob", "referrers") and not is_valid_digest(api.arg):
        raise DigestInvalid(detail={"digest": api.arg})


def _upstream_query(request: web.Request, api: ApiPath) -> list[tuple[str, str]]:
    if api.route == "tags":
        n = request.query.get("n")
        if n is not None and (not n.isdigit() or len(n) > 9):
            raise PaginationInvalid(detail={"n": n})
        return [(k, v) for k, v in request.query.items() if k in ("n", "last")]
    if api.route == "referrers":
        return [(k, v) for k, v in request.query.items() if k == "artifactType"]
    return []


async def _proxy(
    request: web.Request, api: ApiPath, target: Target, ns: str | None
) -> web.StreamResponse:
    app = request.app
    upstream = app[SETTINGS_KEY].upstreams[target.upstream]
    accept = None
    if api.route == "manifest":
        accept = manifest_accept(request.headers.getall("Accept", []))
    headers = upstream_request_headers(request.headers, accept, USER_AGENT)
    suffix = {"manifest": "manifests/", "blob": "blobs/", "tags": "tags/list",
              "referrers": "referrers/"}[api.route]  # fmt: skip
    exchange = request[EXCHANGE] = Exchange()

    async def send(method: str, reference: str) -> ClientResponse:
        return await app[UPSTREAM_KEY].send(
            upstream,
            method,
            f"/v2/{target.name}/{suffix}{reference}",
            query=_upstream_query(request, api),
            headers=headers,
            scopes=[str(pull_scope(target.name))],
            tenant=request.get(TENANT),
            route=api.route,
            exchange=exchange,
        )

    async def answer(response: ClientResponse) -> web.StreamResponse:
        return await _answer(request, api, target, ns, response)

    cache = app[CACHE_KEY]
    namespace = cache.namespace(upstream, request.get(TENANT)) if api.route in CACHED else None
    if namespace is not None:
        origin = Origin(target.upstream, send, answer)
        if api.route == "blob":
            return await serve_blob(request, cache, namespace, target.name, api.arg, origin)
        assert accept is not None
        return await serve_manifest_request(
            request, cache, namespace, target.name, api.arg, accept, origin
        )
    return await answer(await send(request.method, api.arg))


async def _answer(
    request: web.Request, api: ApiPath, target: Target, ns: str | None, response: ClientResponse
) -> web.StreamResponse:
    app = request.app
    upstream = app[SETTINGS_KEY].upstreams[target.upstream]
    if response.status == 401:
        raise await _refused_upstream(response, target.upstream)
    link = None
    if api.route in ("tags", "referrers"):
        link = LinkContext(upstream.url, target.name, api.name, ns)
    try:
        return await relay(
            request, response, link=link, ns=ns, read_timeout=app[SETTINGS_KEY].timeouts.read
        )
    finally:
        response.release()  # no-op after a full read; drops a half-read connection


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
