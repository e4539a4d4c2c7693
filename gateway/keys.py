"""Every ``web.AppKey`` and request key the app uses, typed, in one place."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from .access.gatekeeper import Gatekeeper
from .access.quota import Quota
from .cache.service import Cache
from .health import Readiness
from .metrics import Metrics, SentBytes
from .push.service import PushService
from .routing import Router
from .settings import Settings
from .upstream.auth import Exchange
from .upstream.client import UpstreamClient
from .upstream.passthrough import Passthrough
from .upstream.relay import Relayed
from .upstream.tokens import TokenCache

SETTINGS_KEY = web.AppKey("settings", Settings)
METRICS_KEY = web.AppKey("metrics", Metrics)
ROUTER_KEY = web.AppKey("router", Router)
TOKENS_KEY = web.AppKey("tokens", TokenCache)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM_KEY = web.AppKey("upstream", UpstreamClient)
READINESS_KEY = web.AppKey("readiness", Readiness)
# None when streaming.passthrough is off: every body goes through aiohttp's streaming loop.
PASSTHROUGH_KEY = web.AppKey[Passthrough | None]("passthrough")
ACCESS_KEY = web.AppKey("access", Gatekeeper)
PUSH_KEY = web.AppKey("push", PushService)  # upload sessions and write hooks (push/)
CACHE_KEY = web.AppKey("cache", Cache)
QUOTA_KEY = web.AppKey("quota", Quota)  # only with clients.rate_limits

# Per-request values (request[...]): set by handlers, read by the request middleware.
REQUEST_ID = web.RequestKey("request_id", str)
ROUTE = web.RequestKey("route", str)
UPSTREAM = web.RequestKey("upstream", str)
# which routing rule chose the upstream: ns, host, prefix, default
VIA = web.RequestKey("via", str)
NAME = web.RequestKey("name", str)
PRINCIPAL = web.RequestKey[str | None]("principal")
TENANT = web.RequestKey[str | None]("tenant")
EXCHANGE = web.RequestKey("exchange", Exchange)
SENT = web.RequestKey("sent", SentBytes)  # body bytes relayed to the caller, counted as written
RELAYED = web.RequestKey("relayed", Relayed)  # how a relayed body went (cut short, passthrough)
# hit, miss, stale or bypass when the cache answered or was asked
CACHE_RESULT = web.RequestKey("cache", str)
