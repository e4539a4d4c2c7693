"""The steps every push endpoint shares: admit the write, send it upstream, answer.

Mirrors ``pull``: ``admit_write`` routes the name, refuses upstreams without ``push: true``
(405 ``UNSUPPORTED``), validates the argument and authorizes the action (``push``, or
``delete`` for deletes); ``to_upstream`` sends the write with a token scoped for it and only
it; ``answer_write`` relays the upstream's answer with ``Location`` in the caller's terms, and
writes the audit line.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Literal
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web
from yarl import URL

from ..access.quota import limit
from ..errors import Denied, Unsupported, UpstreamError
from ..keys import (
    ACCESS_KEY,
    EXCHANGE,
    PRINCIPAL,
    PUSH_KEY,
    SETTINGS_KEY,
    TENANT,
    TOKENS_KEY,
    UPSTREAM_KEY,
)
from ..log import get_logger
from ..oci.names import is_valid_digest
from ..oci.scope import Scope
from ..push.headers import location_path, write_request_headers, write_response_headers
from ..push.relay import CallerBody
from ..push.sessions import UploadSession
from ..routing import Route, Target
from ..upstream.auth import Body, Exchange, UpstreamRequest
from ..upstream.client import USER_AGENT
from .pull import admit_caller, route_caller

log = get_logger("gateway.audit")

Action = Literal["push", "delete"]
# What a successful answer's Location names: a continued upload, or what was created.
Created = Literal["upload", "blob", "manifest"]
_BODY_LIMIT = 64 * 1024


async def admit_write(request: web.Request, action: Action, validate: Callable[[], None]) -> Target:
    """Route, refuse non-push upstreams, validate, then authorize ``action`` for the caller."""
    target = await route_caller(request)
    if not request.app[SETTINGS_KEY].upstreams[target.upstream].push:
        raise Unsupported(
            f"pushing to {target.upstream} is not enabled on this gateway",
            detail={"upstream": target.upstream},
        )
    validate()
    admit_caller(request, await request.app[ACCESS_KEY].check(request, target, action))
    await limit(request)  # clients.rate_limits: writes count like pulls
    return target


def write_scopes(name: str, action: Action) -> list[str]:
    """The upstream token a write needs: ``pull,push`` for pushes, ``delete`` for deletes.

    Only write requests ask for these; pulls keep asking for ``pull`` alone.
    """
    actions = ("pull", "push") if action == "push" else ("delete",)
    return [str(Scope("repository", name, actions))]


async def to_upstream(
    request: web.Request,
    target: Target,
    route: Route,
    method: str,
    path: str,
    *,
    action: Action,
    query: list[tuple[str, str]] | None = None,
    data: Body = None,
    extra_scopes: tuple[str, ...] = (),
) -> aiohttp.ClientResponse:
    """Send one write upstream; a streamed body goes only once it is sure to be authorized."""
    app = request.app
    upstream = app[SETTINGS_KEY].upstreams[target.upstream]
    scopes = [*write_scopes(target.name, action), *extra_scopes]
    client = app[UPSTREAM_KEY]
    streamed = isinstance(data, CallerBody)
    headers = write_request_headers(request.headers, USER_AGENT, streamed=streamed)
    cold = app[TOKENS_KEY].known_challenge(upstream.key) is None
    if streamed and upstream.credentials is not None and cold:
        # A streamed body cannot be sent twice, so it must not meet a 401: learn the
        # upstream's challenge (and fetch the token for these scopes) body-less first.
        probe = await client.send(
            UpstreamRequest(
                upstream, "GET", URL(f"{upstream.url}/v2/"),
                write_request_headers(request.headers, USER_AGENT, streamed=False),
                scopes=tuple(scopes), tenant=request.get(TENANT), route=route,
            ),
            Exchange(),
        )  # fmt: skip
        probe.release()
    exchange = request[EXCHANGE] = Exchange()
    url = URL(f"{upstream.url}{path}")
    try:
        response = await client.send(
            UpstreamRequest(
                upstream, method, url.with_query(query) if query else url, headers,
                scopes=tuple(scopes), tenant=request.get(TENANT), route=route, body=data,
            ),
            exchange,
        )  # fmt: skip
    except UpstreamError:
        if isinstance(data, CallerBody) and data.failed is not None:
            # The caller hung up or went silent mid-body; the upstream request was abandoned,
            # not ended. A silent caller's connection is closed: its body will never end.
            if isinstance(data.failed, TimeoutError) and request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("caller gone mid-upload") from data.failed
        raise
    return response


async def answer_write(
    request: web.Request,
    target: Target,
    response: aiohttp.ClientResponse,
    *,
    action: Action,
    created: Created | None,
    session: UploadSession | None = None,
    reference: str | None = None,
    uploaded: int = 0,
) -> web.Response:
    """Relay the upstream's answer: Location in the caller's terms; the audit line."""
    try:
        body = await response.content.read(_BODY_LIMIT)
    finally:
        response.release()
    status = response.status
    digest = response.headers.get("Docker-Content-Digest")
    if digest is not None and not is_valid_digest(digest):
        digest = None
    audit(request, target, action, status, reference=reference, digest=digest, uploaded=uploaded)
    if status == 401:
        # As for pulls: the caller cannot fix the gateway's upstream credentials (pull.py).
        raise Denied(
            "the upstream registry refused the gateway's credentials for this write",
            detail={"upstream": target.upstream, "upstream_status": 401,
                    "upstream_errors": _errors(body)},
        )  # fmt: skip
    headers = write_response_headers(response.headers)
    location = response.headers.get("Location")
    ns = request.query.get("ns")
    suffix = f"?ns={quote(ns, safe=':')}" if ns is not None else ""
    base = f"/v2/{target.caller_name}"
    if 200 <= status < 300 and created == "upload" and location:
        upstream_url = request.app[SETTINGS_KEY].upstreams[target.upstream].url
        kept = location_path(location, upstream_url)
        sealer = request.app[PUSH_KEY].sealer
        if session is None:
            principal, tenant = request.get(PRINCIPAL), request.get(TENANT)
            session = sealer.start(principal, tenant, target.upstream, target.name, kept)
        else:
            session = replace(session, location=kept)
        upload_id = sealer.seal(session)
        headers["Location"] = f"{base}/blobs/uploads/{upload_id}{suffix}"
        headers["Docker-Upload-UUID"] = upload_id
    elif 200 <= status < 300 and created in ("blob", "manifest") and digest is not None:
        headers["Location"] = f"{base}/{created}s/{digest}{suffix}"
    if ns is not None:
        headers["OCI-Namespace"] = ns
    return web.Response(status=status, reason=response.reason, body=body, headers=headers)


def audit(
    request: web.Request,
    target: Target,
    action: Action,
    status: int,
    *,
    reference: str | None,
    digest: str | None,
    uploaded: int,
) -> None:
    """One ``write_relayed`` line per write; the digest also goes onto the request line."""
    if digest is not None:
        structlog.contextvars.bind_contextvars(digest=digest)
    log.info(
        "write_relayed",
        action=action,
        method=request.method,
        principal=request.get(PRINCIPAL) or "anonymous",
        tenant=request.get(TENANT),
        upstream=target.upstream,
        repository=target.name,
        reference=reference,
        digest=digest,
        uploaded_bytes=uploaded,
        upstream_status=status,
    )


def _errors(body: bytes) -> object:
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
            return parsed["errors"][:5]
    return None
