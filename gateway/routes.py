"""The URL table: one line per endpoint, with its spec id (OCI distribution-spec "Endpoints").

``<name>`` holds slashes, so its pattern is ``.+`` and the last fixed segment decides the
endpoint (a repository may itself be called ``manifests``). Routes are tried in order; every
other path under ``/v2/`` is the OCI ``UNSUPPORTED`` envelope, never aiohttp's HTML 404.
Each route is named after its metrics ``route`` label, so ``app.router[route].url_for(...)``
reverses it.
"""

from __future__ import annotations

from aiohttp import web

from .handlers import base, blobs, health, manifests, referrers, tags, token
from .settings import Settings

NAME = "{name:.+}"
# A path segment; the handler validates its grammar so a bad one is an OCI error, not a 404.
SEGMENT = "[^/]+"


def add_routes(app: web.Application, settings: Settings) -> None:
    router = app.router
    # Any method: the handlers answer push and delete with 405 UNSUPPORTED (pull-only).
    router.add_route("*", "/v2", base.base)
    router.add_route("*", "/v2/", base.base, name="base")  # end-1
    router.add_route("*", f"/v2/{NAME}/manifests/{{reference:{SEGMENT}}}",
                     manifests.manifest, name="manifest")  # end-3  # fmt: skip
    router.add_route("*", f"/v2/{NAME}/blobs/{{digest:{SEGMENT}}}",
                     blobs.blob, name="blob")  # end-2  # fmt: skip
    router.add_route("*", f"/v2/{NAME}/tags/list", tags.tags, name="tags")  # end-8a, end-8b
    router.add_route("*", f"/v2/{NAME}/referrers/{{digest:{SEGMENT}}}",
                     referrers.referrers, name="referrers")  # end-12a, end-12b  # fmt: skip
    router.add_route("*", "/v2/{tail:.*}", base.unknown)
    if settings.clients.auth == "token":
        # The gateway's own token service (distribution auth/token.md, auth/oauth.md).
        router.add_get("/token", token.get_token)
        router.add_post("/token", token.post_token)
    router.add_get("/healthz", health.healthz)
    router.add_get("/readyz", health.readyz)
    if settings.metrics.listen is None:
        router.add_get(settings.metrics.path, health.metrics)
