"""What only a scripted upstream can show: OCI-Subject, a foreign Location, a refused write.

distribution 2.8 has no referrers support (no ``OCI-Subject``) and never names another host in
an upload ``Location``; a small aiohttp app on loopback plays that upstream (auth ``none``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.keys import PUSH_KEY
from gateway.push.service import ManifestWritten
from tests.access.identities import make_settings
from tests.integration.loopback import OTHER_HOST, Recorder
from tests.push.conftest import sha256

SUBJECT = "sha256:" + "5" * 64
UPSTREAM = "scripted.test"


async def start(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    tmp_path: Path,
    upstream_app: web.Application,
) -> tuple[TestClient[web.Request, web.Application], list[ManifestWritten]]:
    server = await aiohttp_server(upstream_app)
    settings = make_settings(
        tmp_path, {UPSTREAM: {"url": str(server.make_url("")), "push": True}}, None
    )
    app = create_app(settings)
    written: list[ManifestWritten] = []

    async def hook(event: ManifestWritten) -> None:
        written.append(event)

    app[PUSH_KEY].manifest_hooks.append(hook)
    return await aiohttp_client(app), written


async def test_a_manifest_with_a_subject_relays_oci_subject_and_reaches_the_hooks(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    """end-7 with ``subject``: the upstream's OCI-Subject and digest reach the caller, the
    manifest bytes and type reach the upstream unchanged, and the write hooks hear of it."""
    recorder = Recorder()
    received: list[tuple[str, bytes]] = []

    async def put_manifest(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((request.headers["Content-Type"], body))
        return web.Response(status=201, headers={
            "Docker-Content-Digest": sha256(body), "OCI-Subject": SUBJECT,
            "Location": f"/v2/{request.match_info['name']}/manifests/{sha256(body)}",
        })  # fmt: skip

    upstream = recorder.app()
    upstream.router.add_put("/v2/{name:.+}/manifests/{reference}", put_manifest)
    gateway, written = await start(aiohttp_server, aiohttp_client, tmp_path, upstream)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": SUBJECT, "size": 1},
    }).encode()  # fmt: skip
    mtype = "application/vnd.oci.image.manifest.v1+json"
    answer = await gateway.put(
        f"/v2/{UPSTREAM}/sig/app/manifests/{sha256(manifest)}",
        data=manifest, headers={"Content-Type": mtype},
    )  # fmt: skip
    assert answer.status == 201
    assert answer.headers["OCI-Subject"] == SUBJECT
    assert answer.headers["Docker-Content-Digest"] == sha256(manifest)
    assert answer.headers["Location"] == f"/v2/{UPSTREAM}/sig/app/manifests/{sha256(manifest)}"
    assert received == [(mtype, manifest)]
    assert written == [ManifestWritten(UPSTREAM, None, "sig/app", sha256(manifest),
                                       sha256(manifest))]  # fmt: skip


async def test_an_upload_location_naming_another_host_is_continued_at_the_upstream(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    """An upstream Location on another host: the gateway keeps its path and continues at the
    configured upstream; the other host is never contacted."""
    elsewhere = Recorder()
    other = await aiohttp_server(elsewhere.app(), host=OTHER_HOST)
    recorder = Recorder()

    async def start_upload(request: web.Request) -> web.Response:
        location = str(other.make_url(f"/v2/{request.match_info['name']}/blobs/uploads/u1?s=1"))
        return web.Response(status=202, headers={"Location": location, "Range": "0-0"})

    async def status(request: web.Request) -> web.Response:
        assert request.query["s"] == "1"
        return web.Response(status=204, headers={
            "Location": f"/v2/{request.match_info['name']}/blobs/uploads/u1?s=2", "Range": "0-9",
        })  # fmt: skip

    upstream = recorder.app()
    upstream.router.add_post("/v2/{name:.+}/blobs/uploads/", start_upload)
    upstream.router.add_get("/v2/{name:.+}/blobs/uploads/{id}", status)
    gateway, _ = await start(aiohttp_server, aiohttp_client, tmp_path, upstream)
    started = await gateway.post(f"/v2/{UPSTREAM}/x/blobs/uploads/")
    assert started.status == 202 and OTHER_HOST not in started.headers["Location"]
    answer = await gateway.get(started.headers["Location"])
    assert answer.status == 204 and answer.headers["Range"] == "0-9"
    assert [r.path for r in recorder.requests] == ["/v2/x/blobs/uploads/", "/v2/x/blobs/uploads/u1"]
    assert elsewhere.requests == []


async def test_an_upstream_refusing_a_streamed_write_is_denied_without_a_replay(
    aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    """A 401 to a streamed PATCH is 403 DENIED for the caller; the body went upstream once."""
    recorder = Recorder()

    async def start_upload(request: web.Request) -> web.Response:
        return web.Response(status=202, headers={"Location": "/v2/x/blobs/uploads/u1"})

    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "no"}]}, status=401,
            headers={"WWW-Authenticate": 'Basic realm="x"'},
        )  # fmt: skip

    upstream = recorder.app()
    upstream.router.add_post("/v2/{name:.+}/blobs/uploads/", start_upload)
    upstream.router.add_patch("/v2/{name:.+}/blobs/uploads/{id}", refuse)
    gateway, _ = await start(aiohttp_server, aiohttp_client, tmp_path, upstream)
    started = await gateway.post(f"/v2/{UPSTREAM}/x/blobs/uploads/")

    async def body() -> Any:
        yield b"0123456789"

    answer = await gateway.patch(started.headers["Location"], data=body())
    assert answer.status == 403
    assert [e["code"] for e in (await answer.json())["errors"]] == ["DENIED"]
    assert "WWW-Authenticate" not in answer.headers
    assert [r.method for r in recorder.requests] == ["POST", "PATCH"]
