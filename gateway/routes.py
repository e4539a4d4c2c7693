"""The URL table: one line per endpoint, with its spec id (OCI distribution-spec "Endpoints").

``<name>`` holds slashes, so its pattern is ``.+`` and the last fixed segment decides the
endpoint (a repository may itself be called ``manifests``). Routes are tried in order; every
other path under ``/v2/`` is the OCI ``UNSUPPORTED`` envelope, never aiohttp's HTML 404.
Each route is named after its metrics ``route`` label, so ``app.router[route].url_for(...)``
reverses it.
"""

from __future__ import annotations

from aiohttp import web

from .connections import expect_handler
from .handlers import base, blobs, health, manifests, referrers, tags, token, uploads, writes
from .settings import Settings

NAME = "{name:.+}"
# A path segment; the handler validates its grammar so a bad one is an OCI error, not a 404.
SEGMENT = "[^/]+"


def add_routes(app: web.Application, settings: Settings) -> None:
    router = app.router
    # Any method: pull handlers answer methods they do not serve with 405 UNSUPPORTED.
    # An Expect other than 100-continue gets a 417 envelope (RFC 9110 §10.1.1): every
    # /v2 route names the expect handler (aiohttp runs it before the middlewares).
    expect = expect_handler
    router.add_route("*", "/v2", base.base, expect_handler=expect)
    router.add_route("*", "/v2/", base.base, name="base", expect_handler=expect)  # end-1
    # The push API (end-4a..end-14): method-specific routes first, the pull handler after.
    router.add_route(
        "POST", f"/v2/{NAME}/blobs/uploads/", uploads.start, expect_handler=expect
    )  # end-4a/4b/11
    # end-5, end-6, end-13, end-14
    router.add_route("*", f"/v2/{NAME}/blobs/uploads/{{upload:{SEGMENT}}}",
                     uploads.session, expect_handler=expect)  # fmt: skip
    manifest = router.add_resource(f"/v2/{NAME}/manifests/{{reference:{SEGMENT}}}",
                                   name="manifest")  # fmt: skip
    manifest.add_route("PUT", writes.put_manifest, expect_handler=expect)  # end-7
    manifest.add_route("DELETE", writes.delete_manifest, expect_handler=expect)  # end-9
    manifest.add_route("*", manifests.manifest, expect_handler=expect)  # end-3
    blob = router.add_resource(f"/v2/{NAME}/blobs/{{digest:{SEGMENT}}}", name="blob")
    blob.add_route("DELETE", writes.delete_blob, expect_handler=expect)  # end-10
    blob.add_route("*", blobs.blob, expect_handler=expect)  # end-2
    router.add_route(
        "*", f"/v2/{NAME}/tags/list", tags.tags, name="tags", expect_handler=expect
    )  # end-8a/8b
    # end-12a, end-12b
    router.add_route("*", f"/v2/{NAME}/referrers/{{digest:{SEGMENT}}}",
                     referrers.referrers, name="referrers", expect_handler=expect)  # fmt: skip
    router.add_route("*", "/v2/{tail:.*}", base.unknown, expect_handler=expect)
    if settings.clients.auth == "token":
        # The gateway's own token service (distribution auth/token.md, auth/oauth.md).
        router.add_get("/token", token.get_token)
        router.add_post("/token", token.post_token)
    router.add_get("/healthz", health.healthz)
    router.add_get("/readyz", health.readyz)
    if settings.metrics.listen is None:
        router.add_get(settings.metrics.path, health.metrics)


def add_admin_routes(admin: web.Application, settings: Settings) -> None:
    """The admin listener (``metrics.listen``): exposition and health, nothing else."""
    admin.router.add_get(settings.metrics.path, health.metrics)
    admin.router.add_get("/healthz", health.healthz)
    admin.router.add_get("/readyz", health.readyz)
