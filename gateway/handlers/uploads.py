"""Blob uploads: start (end-4a), monolithic (end-4b), mount (end-11), and the upload session:
chunk (end-5), status (end-13), close with the digest (end-6), cancel (end-14).

An upload id in the path is opened (and checked to be this caller's) before anything goes
upstream; the upstream's Location in every answer is sealed into a fresh id.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import DigestInvalid, RegistryError, Unsupported
from ..keys import (
    ACCESS_KEY,
    METRICS_KEY,
    PRINCIPAL,
    PUSH_KEY,
    ROUTE,
    ROUTER_KEY,
    SETTINGS_KEY,
    TENANT,
)
from ..oci.scope import pull_scope
from ..push.headers import location_path, split_location
from ..push.relay import CallerBody
from ..push.sessions import UploadSession
from ..routing import Target
from .blobs import validate_digest
from .push import Created, admit_write, answer_write, to_upstream

SESSION_METHODS = ("PATCH", "PUT", "GET", "DELETE")


def _caller_body(request: web.Request, target: Target) -> CallerBody | None:
    if not request.body_exists:
        return None
    counter = request.app[METRICS_KEY].upload_bytes.labels(target.upstream)
    idle = request.app[SETTINGS_KEY].timeouts.read
    return CallerBody(request.content, counter, idle_timeout=idle)


async def _mount_source(request: web.Request, target: Target, source_name: str) -> Target | None:
    """The ``from`` repository when the caller may pull it on the same upstream, else None.

    A mount the caller could not read would hand them a blob from someone else's repository;
    it is not attempted, and the upstream opens a plain session instead (end-11 fallback).
    """
    try:
        source = request.app[ROUTER_KEY].route(
            source_name, ns=request.query.get("ns"), host=request.host
        )
    except RegistryError:
        return None
    if source.upstream != target.upstream:
        return None
    decision = await request.app[ACCESS_KEY].check(request, source, "pull")
    return source if decision.error is None else None


async def start(request: web.Request) -> web.StreamResponse:
    """``POST /v2/<name>/blobs/uploads/``, optionally ``?digest=`` or ``?mount=&from=``."""
    request[ROUTE] = "blob"
    digest = request.query.get("digest")
    mount = request.query.get("mount")

    def validate() -> None:
        for value in (digest, mount):
            if value is not None:
                validate_digest(value)

    target = await admit_write(request, "push", validate)
    path = f"/v2/{target.name}/blobs/uploads/"
    query: list[tuple[str, str]] = []
    extra: tuple[str, ...] = ()
    source_name = request.query.get("from")
    if mount is not None and source_name is not None:
        source = await _mount_source(request, target, source_name)
        if source is not None:
            query = [("mount", mount), ("from", source.name)]
            extra = (str(pull_scope(source.name)),)
    # end-4b goes upstream as a start and a PUT of the body into that session: whatever the
    # upstream does with a POST body (distribution ignores it), the caller's bytes arrive.
    response = await to_upstream(
        request, target, "blob", "POST", path, action="push", query=query, extra_scopes=extra
    )
    if digest is None or response.status != 202 or "Location" not in response.headers:
        created: Created = "blob" if response.status == 201 else "upload"
        return await answer_write(
            request, target, response, action="push", created=created, reference=mount
        )
    location = response.headers["Location"]
    response.release()
    upstream_url = request.app[SETTINGS_KEY].upstreams[target.upstream].url
    opened = request.app[PUSH_KEY].sealer.start(
        request.get(PRINCIPAL), request.get(TENANT), target.upstream, target.name,
        location_path(location, upstream_url),
    )  # fmt: skip
    return await _close(request, target, opened, digest)


async def session(request: web.Request) -> web.StreamResponse:
    """``PATCH``/``PUT``/``GET``/``DELETE /v2/<name>/blobs/uploads/<upload>``."""
    request[ROUTE] = "blob"
    if request.method not in SESSION_METHODS:
        raise Unsupported(headers={"Allow": ", ".join(SESSION_METHODS)})
    digest = request.query.get("digest")

    def validate() -> None:
        if request.method == "PUT":
            if digest is None:
                raise DigestInvalid("the digest query parameter is required (end-6)")
            validate_digest(digest)

    target = await admit_write(request, "push", validate)
    opened = request.app[PUSH_KEY].sealer.open(
        request.match_info["upload"], principal=request.get(PRINCIPAL),
        tenant=request.get(TENANT), upstream=target.upstream, name=target.name,
    )  # fmt: skip
    if request.method == "PUT":
        assert digest is not None
        return await _close(request, target, opened, digest)
    path, query = split_location(opened.location)
    body = _caller_body(request, target) if request.method == "PATCH" else None
    response = await to_upstream(
        request, target, "blob", request.method, path, action="push", query=query, data=body
    )
    created: Created | None = None if request.method == "DELETE" else "upload"
    return await answer_write(
        request, target, response, action="push", created=created, session=opened,
        uploaded=body.total if body else 0,
    )  # fmt: skip


async def _close(
    request: web.Request, target: Target, opened: UploadSession, digest: str
) -> web.StreamResponse:
    """end-6: the last bytes (if any) and the digest; the upstream commits only on a match."""
    path, query = split_location(opened.location)
    query = [(k, v) for k, v in query if k != "digest"] + [("digest", digest)]
    body = _caller_body(request, target)
    response = await to_upstream(
        request, target, "blob", "PUT", path, action="push", query=query, data=body
    )
    return await answer_write(
        request, target, response, action="push", created="blob", reference=digest,
        uploaded=body.total if body else 0,
    )  # fmt: skip
