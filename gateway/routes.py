"""The URL table: one line per endpoint, with its spec id."""

from __future__ import annotations

from aiohttp import web

from .connections import expect_handler
from .handlers import health, registry, token
from .settings import Settings


def add_routes(app: web.Application, settings: Settings) -> None:
    router = app.router
    # end-1 /v2/, end-2 blobs, end-3 manifests, end-8 tags/list, end-12 referrers: one
    # dispatcher, because <name> holds slashes the router cannot split unambiguously.
    # An Expect other than 100-continue gets a 417 envelope (RFC 9110 §10.1.1).
    router.add_route("*", "/v2", registry.v2, expect_handler=expect_handler)
    router.add_route("*", "/v2/{tail:.*}", registry.v2, expect_handler=expect_handler)
    if settings.clients.auth == "token":
        # The gateway's own token service (distribution auth/token.md, auth/oauth.md).
        router.add_get("/token", token.get_token)
        router.add_post("/token", token.post_token)
    router.add_get("/healthz", health.healthz)
    router.add_get("/readyz", health.readyz)
    if settings.metrics.listen is None:
        router.add_get(settings.metrics.path, health.metrics)
