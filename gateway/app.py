"""The composition root: ``create_app`` builds every service and stores it under an AppKey."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from .access.gatekeeper import Gatekeeper
from .cache.responses import mark_response
from .cache.service import Cache
from .cluster import wiring as scaleout
from .credentials.base import CredentialStore
from .credentials.store import UpstreamCredentialStore
from .credentials.vault import VaultCredentialStore
from .health import Readiness
from .keys import (
    ACCESS_KEY,
    CACHE_KEY,
    METRICS_KEY,
    PASSTHROUGH_KEY,
    PUSH_KEY,
    READINESS_KEY,
    ROUTER_KEY,
    SESSION_KEY,
    SETTINGS_KEY,
    TOKENS_KEY,
    UPSTREAM_KEY,
)
from .metrics import Metrics
from .middlewares import on_prepare, request_context
from .probe import probe_loops
from .push.service import BlobDeleted, ManifestWritten, PushService
from .routes import add_admin_routes, add_routes
from .routing import Router
from .settings import Settings
from .upstream.client import UpstreamClient
from .upstream.passthrough import Passthrough
from .upstream.tokens import TokenCache

# Large reads mean fewer, bigger chunks through the relay: fewer loop iterations per MiB.
READ_BUFSIZE = 1 << 20


def create_app(
    settings: Settings,
    *,
    credentials: CredentialStore | None = None,
    metrics: Metrics | None = None,
    session_kwargs: dict[str, Any] | None = None,
) -> web.Application:
    """Build the gateway application; keyword arguments replace services in tests."""
    app = web.Application(
        middlewares=[request_context],
        handler_args={
            "max_line_size": settings.limits.max_line_size,
            "max_field_size": settings.limits.max_field_size,
        },
    )
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics or Metrics()
    app[ROUTER_KEY] = Router(
        upstreams=frozenset(settings.upstreams),
        hosts=settings.routing.hosts,
        default=settings.routing.default,
    )
    app[TOKENS_KEY] = TokenCache()
    app[ACCESS_KEY] = Gatekeeper.from_settings(
        settings, metrics=app[METRICS_KEY], router=app[ROUTER_KEY]
    )
    app.cleanup_ctx.append(app[ACCESS_KEY].watch_users)
    app[PUSH_KEY] = PushService.from_settings(settings)
    app[READINESS_KEY] = Readiness()
    vault = None
    if credentials is None and settings.vault is not None:
        vault = VaultCredentialStore(settings.vault, settings.upstreams, app[METRICS_KEY])
        app[READINESS_KEY].add_check("vault", vault.problem)
    store = credentials or UpstreamCredentialStore(settings.upstreams, vault=vault)
    app.on_response_prepare.append(on_prepare)
    app[CACHE_KEY] = Cache(settings.cache, app[METRICS_KEY], store=scaleout.store(settings, vault))
    if settings.cache.enabled:
        scaleout.add_store_lifecycle(app, app[CACHE_KEY])
        app.cleanup_ctx.append(app[CACHE_KEY].lifecycle)
        app[READINESS_KEY].add_check("cache", scaleout.cache_check(app[CACHE_KEY]))
        app.on_response_prepare.append(mark_response)
        cache = app[CACHE_KEY]

        async def forget_pushed_tag(event: ManifestWritten) -> None:
            # CONTRACT: a tag pushed through the gateway is seen by the next pull at once.
            upstream = settings.upstreams[event.upstream]
            cache.forget_tag(upstream, event.tenant, event.name, event.reference)
            if event.deleted and event.digest is not None:
                await cache.forget_content(upstream, event.tenant, "manifests", event.digest)

        async def forget_deleted_blob(event: BlobDeleted) -> None:
            upstream = settings.upstreams[event.upstream]
            await cache.forget_content(upstream, event.tenant, "blobs", event.digest)

        app[PUSH_KEY].manifest_hooks.append(forget_pushed_tag)
        app[PUSH_KEY].blob_hooks.append(forget_deleted_blob)
    scaleout.add_limits(app, settings, scaleout.add_cluster(app, settings, app[CACHE_KEY], vault))
    slots = scaleout.upstream_slots(settings, app[METRICS_KEY])

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.timeouts.connect,
            sock_read=settings.timeouts.read,
        )
        # No pool cap: a queued request would wait outside every timeout; the number of
        # caller connections (limits.max_connections) bounds upstream connections instead.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=60)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,  # blob bytes must stay digest-exact
            read_bufsize=READ_BUFSIZE,
            trust_env=False,  # never pick up .netrc credentials for upstream hosts
            **(session_kwargs or {}),
        )
        app[SESSION_KEY] = session
        app[UPSTREAM_KEY] = UpstreamClient(
            session, settings, store, app[TOKENS_KEY], app[METRICS_KEY], slots
        )
        pump = Passthrough() if settings.streaming.passthrough else None
        app[PASSTHROUGH_KEY] = pump
        yield
        await session.close()
        if pump is not None:
            pump.close()

    app.cleanup_ctx.append(upstream_session)

    if vault is not None:
        vault_store = vault

        async def vault_lifecycle(app: web.Application) -> AsyncIterator[None]:
            # Logs in in the background: a slow Vault never delays serving other upstreams.
            await vault_store.start()
            yield
            await vault_store.close()

        app.cleanup_ctx.append(vault_lifecycle)
    app.cleanup_ctx.append(probe_loops(settings, store))  # after the session it probes with
    add_routes(app, settings)
    return app


def create_admin_app(app: web.Application, settings: Settings) -> web.Application | None:
    """The admin listener's app (metrics, health) when ``metrics.listen`` is set, else None.

    It keeps answering while the main listener drains, so a scraper and a readiness probe
    pointed here see the drain (/readyz 503) instead of a refused port.
    """
    if settings.metrics.listen is None:
        return None
    admin = web.Application()
    admin[METRICS_KEY] = app[METRICS_KEY]
    admin[READINESS_KEY] = app[READINESS_KEY]
    add_admin_routes(admin, settings)
    return admin
