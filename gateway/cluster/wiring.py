"""What ``create_app`` adds for several replicas: the S3 store, the Redis cluster, limits."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from ..cache.s3 import S3Store, access_from
from ..cache.service import Cache
from ..cache.store import Store
from ..credentials.vault import VaultCredentialStore
from ..credentials.vault_secrets import Location
from ..health import Degraded
from ..keys import ACCESS_KEY, METRICS_KEY
from ..log import get_logger
from ..metrics import Metrics
from ..settings import Settings
from ..upstream.concurrency import UpstreamSlots
from .coordinator import Cluster
from .logins import SharedLoginLimiter

log = get_logger(__name__)


def store(settings: Settings, vault: VaultCredentialStore | None = None) -> Store | None:
    """The configured store when it is not the default filesystem one."""
    cache = settings.cache
    if not cache.enabled or cache.store != "s3":
        return None
    loader = None
    spec = (cache.s3.credentials or {}).get("vault")
    if spec is not None and vault is not None:
        where = Location(spec.get("mount") or settings_kv_mount(settings), spec["path"].strip("/"))

        async def loader() -> Mapping[str, Any]:
            assert vault is not None
            return await vault.read(where)

    return S3Store(
        access_from(cache.s3, os.environ), timeout=settings.timeouts.read, credentials=loader
    )


def settings_kv_mount(settings: Settings) -> str:
    return settings.vault.kv_mount if settings.vault is not None else "secret"


def add_store_lifecycle(app: web.Application, cache: Cache) -> None:
    """Close the S3 client after the cache stopped (cleanup runs in reverse order)."""
    if not isinstance(cache.store, S3Store):
        return
    s3 = cache.store

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        yield
        await s3.close()

    app.cleanup_ctx.append(lifecycle)


def cache_check(cache: Cache) -> Callable[[], str | None]:
    """/readyz: a shared store that does not answer is named but keeps the replica ready:
    pulls stream from the upstream meanwhile, and taking every replica out of service would
    turn an object-store outage into a pull outage."""

    def check() -> str | None:
        problem = cache.problem()
        if problem is not None and cache.shared:
            return Degraded(problem)
        return problem

    return check


def redis_password(
    settings: Settings, vault: VaultCredentialStore | None
) -> Callable[[], Awaitable[str | None]]:
    """How to get the Redis password: env or file (read now), or a Vault secret's ``password``."""
    assert settings.cluster is not None and settings.cluster.redis is not None
    redis = settings.cluster.redis
    fixed: str | None = None
    if redis.password is not None:
        fixed = redis.password.reveal()
    elif redis.password_file is not None:
        fixed = Path(redis.password_file).read_text(encoding="utf-8").strip()
    path = redis.password_vault

    async def password() -> str | None:
        if path is None or vault is None:
            return fixed
        secret = await vault.read(Location(settings_kv_mount(settings), path.strip("/")))
        value = secret.get("password")
        return str(value) if value is not None else None

    return password


def add_cluster(
    app: web.Application,
    settings: Settings,
    cache: Cache,
    vault: VaultCredentialStore | None = None,
) -> Cluster | None:
    if settings.cluster is None or settings.cluster.redis is None:
        return None
    cluster = Cluster(settings.cluster, app[METRICS_KEY], password=redis_password(settings, vault))
    cache.cluster = cluster
    limit = settings.clients.login_limit
    app[ACCESS_KEY].use_limiter(SharedLoginLimiter(cluster, limit.failures, limit.window))

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        log.info("cluster_configured", key_prefix=cluster.prefix,
                 fill_lease=settings.cluster.fill_lease if settings.cluster else None)  # fmt: skip
        yield
        await cluster.close()

    app.cleanup_ctx.append(lifecycle)
    return cluster


def add_limits(app: web.Application, settings: Settings, cluster: Cluster | None) -> None:
    """``clients.rate_limits`` (shared through Redis when there is one)."""
    from ..access.quota import Quota, charge_sent
    from ..keys import QUOTA_KEY

    limits = settings.clients.rate_limits
    if limits is not None:
        app[QUOTA_KEY] = Quota(limits, app[METRICS_KEY], cluster=cluster)
        if limits.bytes_per_second:
            app.middlewares.append(charge_sent)


def upstream_slots(settings: Settings, metrics: Metrics) -> UpstreamSlots | None:
    if not any(up.max_concurrency for up in settings.upstreams.values()):
        return None
    return UpstreamSlots(settings.upstreams, metrics, wait=settings.timeouts.read)
