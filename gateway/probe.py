"""Upstream probes: can the gateway reach each upstream and log in with its credentials?

A probe does what ``docker login`` does and nothing a pull does: ``GET /v2/`` and, when the
upstream answers with a challenge, Basic credentials or the token flow for a token with no
repository scope. It never asks for a manifest or blob, so it never counts as a pull (Docker
Hub counts manifest GETs), and it runs on a token cache and a metrics registry of its own, so
the pull metrics and the pull token cache never see it. Credentials come from the app's
credential store: a Vault-held secret that is refused is re-read once, exactly as a pull would,
so a probe turns green as soon as Vault holds the new password.

``registry-gateway probe`` runs one round; ``upstreams.<key>.probe_interval`` runs one probe
loop per upstream inside the gateway, exporting ``registry_gateway_upstream_probe_success``.
A result names what failed (status, stage, Vault path), never a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .credentials.base import CredentialStore
from .errors import CredentialsUnavailable, UpstreamAuthFailed, UpstreamError, UpstreamTimeout
from .keys import METRICS_KEY, SESSION_KEY
from .log import get_logger
from .metrics import Metrics
from .settings import Settings, UpstreamSettings, VaultCredentialsSpec
from .upstream.auth import Exchange, UpstreamRequest
from .upstream.client import USER_AGENT, UpstreamClient
from .upstream.tokens import TokenCache

log = get_logger(__name__)

BASE_PATH = "/v2/"


@dataclass(frozen=True)
class ProbeResult:
    """One upstream's outcome; ``detail`` is safe to print and log."""

    upstream: str
    ok: bool
    detail: str
    seconds: float

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return f"{self.upstream}: {verdict}: {self.detail} ({self.seconds * 1000:.0f} ms)"


class Prober:
    """Probes upstreams through the gateway's own upstream client and credential store."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        credentials: CredentialStore,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._settings = settings
        self._credentials = credentials
        self._clock = clock
        # Probe traffic stays out of the pull metrics: upstream requests go to a private registry.
        self._metrics = Metrics()

    async def probe(self, upstream: UpstreamSettings) -> ProbeResult:
        """Reach ``upstream`` and authenticate with its credentials, for every tenant they use."""
        started = self._clock()
        spec = upstream.credentials
        tenants: Sequence[str | None] = [None]
        if isinstance(spec, VaultCredentialsSpec) and spec.templated:
            tenants = sorted(self._settings.clients.tenants) or [None]
        details = []
        ok = True
        for tenant in tenants:
            passed, detail = await self._probe_once(upstream, tenant)
            ok = ok and passed
            details.append(detail if tenant is None else f"tenant {tenant}: {detail}")
        return ProbeResult(upstream.key, ok, "; ".join(details), self._clock() - started)

    async def probe_all(self) -> list[ProbeResult]:
        """Every configured upstream, concurrently, in key order."""
        upstreams = [self._settings.upstreams[key] for key in sorted(self._settings.upstreams)]
        return list(await asyncio.gather(*(self.probe(up) for up in upstreams)))

    async def _probe_once(self, upstream: UpstreamSettings, tenant: str | None) -> tuple[bool, str]:
        exchange = Exchange()
        # A fresh token cache each time: a probe must really authenticate, not reuse a token.
        client = UpstreamClient(
            self._session, self._settings, self._credentials, TokenCache(), self._metrics
        )
        deadline = 2 * (self._settings.timeouts.connect + self._settings.timeouts.read)
        try:
            async with asyncio.timeout(deadline):
                response = await client.send(
                    UpstreamRequest(
                        upstream,
                        "GET",
                        URL(f"{upstream.url}{BASE_PATH}"),
                        CIMultiDict({"User-Agent": USER_AGENT}),
                        scopes=(),  # docker login asks for no repository access
                        tenant=tenant,
                        route="base",
                    ),
                    exchange,
                )
                status = response.status
                response.release()
        except CredentialsUnavailable as exc:
            reason = exc.detail.get("reason") if isinstance(exc.detail, dict) else None
            return False, f"credentials unavailable: {reason or exc.message}"
        except UpstreamAuthFailed as exc:
            return False, f"authentication refused: {exc.message}"
        except (UpstreamTimeout, TimeoutError):
            return False, f"no answer within the timeouts ({deadline:g}s)"
        except UpstreamError as exc:
            reason = exc.detail.get("reason") if isinstance(exc.detail, dict) else None
            return False, f"unreachable: {exc.message}" + (f" ({reason})" if reason else "")
        how = _AUTH_WORDS.get(exchange.auth or "", exchange.auth or "anonymous")
        if status == 200:
            return True, f"GET {BASE_PATH} 200, {how}"
        if status in (401, 403):
            if upstream.credentials is None:
                return False, f"GET {BASE_PATH} {status}: the upstream wants credentials, none set"
            return False, f"GET {BASE_PATH} {status}: credentials refused ({how})"
        return False, f"GET {BASE_PATH} answered {status}"


_AUTH_WORDS = {
    "fetched": "bearer token issued",
    "cached": "bearer token issued",
    "static": "static bearer token",
    "basic": "basic credentials",
    "anonymous": "anonymous",
}


def probe_loops(
    settings: Settings, credentials: CredentialStore
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running one named probe task per upstream with ``probe_interval``."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        prober = Prober(app[SESSION_KEY], settings, credentials)
        gauge = app[METRICS_KEY].upstream_probe_success
        tasks = [
            asyncio.create_task(
                _loop(prober, upstream, upstream.probe_interval, gauge.labels(upstream.key).set),
                name=f"probe-{upstream.key}",
            )
            for upstream in settings.upstreams.values()
            if upstream.probe_interval is not None
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return run


async def _loop(
    prober: Prober, upstream: UpstreamSettings, interval: float, report: Callable[[float], None]
) -> None:
    """Probe now, then every ``interval`` seconds; log when the outcome changes."""
    previous: bool | None = None
    while True:
        try:
            result = await prober.probe(upstream)
        except Exception as exc:  # a bug here must not end the loop silently
            result = ProbeResult(upstream.key, False, f"probe crashed: {type(exc).__name__}", 0.0)
            log.exception("upstream_probe_crashed", upstream=upstream.key)
        report(1.0 if result.ok else 0.0)
        if not result.ok and previous is not False:
            log.warning("upstream_probe_failed", upstream=upstream.key, detail=result.detail)
        elif result.ok and previous is False:
            log.info("upstream_probe_recovered", upstream=upstream.key, detail=result.detail)
        else:
            log.debug("upstream_probed", upstream=upstream.key, ok=result.ok)
        previous = result.ok
        await asyncio.sleep(max(interval - result.seconds, 0.0))
