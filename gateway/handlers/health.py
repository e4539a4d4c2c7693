"""``/healthz`` (liveness), ``/readyz`` (readiness) and the Prometheus exposition."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..keys import METRICS_KEY, READINESS_KEY


async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves requests."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when every check passes; 503 naming each check otherwise."""
    ready, checks = request.app[READINESS_KEY].report()
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the app's own registry."""
    metrics = request.app[METRICS_KEY]
    # Readiness is evaluated per scrape, so the gauge never lags /readyz.
    ready, _ = request.app[READINESS_KEY].report()
    metrics.ready.set(1 if ready else 0)
    body = generate_latest(_WithoutCreated(metrics.registry))
    # web.Response(content_type=...) refuses a charset parameter: aiohttp raises ValueError.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class _WithoutCreated(Collector):
    """The registry without prometheus_client's ``*_created`` samples.

    One per counter and histogram child, they double the series count and no dashboard or
    alert here reads them (Prometheus derives resets from the counters themselves).
    """

    def __init__(self, registry: Collector) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():  # fresh Metric objects on every collect
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
