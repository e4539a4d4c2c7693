"""The one place that talks HTTP to upstream registries: it drives the auth flow.

``auth.auth_flow`` decides (credentials, 401 challenges, re-reads, redirects); this module
performs its steps: sends requests, fetches tokens through the coalescing token cache, asks the
credential store, and maps transport failures to 502/504. Bodies are not read here: the
caller streams them.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from typing import Any, Literal

import aiohttp
from multidict import CIMultiDict

from .. import __version__
from ..caching import LOADED
from ..credentials.base import CredentialsError, CredentialStore, UpstreamCredentials
from ..errors import (
    CredentialsUnavailable,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ..log import get_logger
from ..metrics import Metrics
from ..secret import Secret
from ..settings import Settings, UpstreamSettings
from .auth import (
    Exchange,
    FetchToken,
    Reply,
    Reread,
    Send,
    Step,
    Token,
    UpstreamRequest,
    auth_flow,
)
from .concurrency import UpstreamSlots
from .tokens import IssuedToken, TokenCache, TokenResponseError, parse_token_response

log = get_logger(__name__)

USER_AGENT = f"registry-gateway/{__version__}"
TOKEN_BODY_LIMIT = 1 << 20


class UpstreamClient:
    """Sends requests to configured upstreams with the right credentials attached."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        credentials: CredentialStore,
        tokens: TokenCache,
        metrics: Metrics,
        slots: UpstreamSlots | None = None,
    ) -> None:
        self._slots = slots
        self._session = session
        self._credentials = credentials
        self._tokens = tokens
        self._metrics = metrics
        self._ssl = {key: _ssl_for(up) for key, up in settings.upstreams.items()}

    async def send(self, request: UpstreamRequest, exchange: Exchange) -> aiohttp.ClientResponse:
        """Send one logical request; the response is open and must be released by the caller.

        Under ``max_concurrency`` a slot is held from here until the response is released.
        """
        slot = await self._slots.acquire(request.upstream.key) if self._slots else None
        if slot is None:
            return await self._send(request, exchange)
        try:
            response = await self._send(request, exchange)
        except BaseException:
            slot.release()
            raise
        slot.hold(response)
        return response

    async def _send(self, request: UpstreamRequest, exchange: Exchange) -> aiohttp.ClientResponse:
        credentials = await self._get_credentials(request.upstream, request.tenant)
        flow = auth_flow(request, credentials, self._tokens, exchange)
        response: aiohttp.ClientResponse | None = None
        try:
            step: Step = next(flow)
            while True:
                try:
                    if isinstance(step, Send):
                        if response is not None:
                            response.release()  # an answer the flow has read and moved past
                            response = None
                        response = await self._request(request, step)
                        answer: Any = _reply(response, step)
                    elif isinstance(step, FetchToken):
                        answer = await self._token(request.upstream, step)
                    else:
                        answer = await self._reread(request)
                except UpstreamError as exc:
                    step = flow.throw(exc)
                else:
                    step = flow.send(answer)
        except StopIteration:
            assert response is not None  # the flow's final reply is the last response
            return response
        except BaseException:
            if response is not None:
                response.release()
            raise

    async def _get_credentials(
        self, upstream: UpstreamSettings, tenant: str | None
    ) -> UpstreamCredentials | None:
        try:
            return await self._credentials.get(upstream.key, tenant)
        except CredentialsError as exc:
            log.error("credentials_unavailable", upstream=upstream.key, error=str(exc))
            error = CredentialsUnavailable(detail={"upstream": upstream.key, "reason": str(exc)})
            error.status = exc.status
            raise error from exc

    async def _reread(self, request: UpstreamRequest) -> Reread.Result:
        """The upstream (or its token service) refused what we hold; a rotated secret may fix it."""
        key, tenant = request.upstream.key, request.tenant
        if not await self._credentials.rejected(key, tenant):
            return Reread.Result(may_differ=False)
        log.info("credentials_refused_rereading", upstream=key)
        return Reread.Result(True, await self._get_credentials(request.upstream, tenant))

    async def _token(self, upstream: UpstreamSettings, fetch: FetchToken) -> Token:
        if fetch.realm_refused:
            log.warning("token_realm_not_allowed", upstream=upstream.key,
                        token_realm=fetch.realm.host)  # fmt: skip

        async def load() -> tuple[Secret, float]:
            issued = await self._fetch_token(upstream, fetch)
            return issued.value, issued.ttl

        try:
            token, how = await self._tokens.tokens.get_or_load(fetch.key, load)
        except UpstreamError:
            self._metrics.upstream_tokens.labels(upstream.key, "error").inc()
            raise
        # Waiting on another request's fetch is not a fetch of our own.
        outcome: Literal["cached", "fetched"] = "fetched" if how == LOADED else "cached"
        self._metrics.upstream_tokens.labels(upstream.key, outcome).inc()
        return Token(token, outcome)

    async def _fetch_token(self, upstream: UpstreamSettings, fetch: FetchToken) -> IssuedToken:
        realm, challenge, credentials = fetch.realm, fetch.challenge, fetch.credentials
        query: list[tuple[str, str]] = list(realm.query.items())
        if challenge.service:
            query.append(("service", challenge.service))
        query.extend(("scope", scope) for scope in fetch.scopes)
        headers = {"User-Agent": USER_AGENT}
        if credentials is not None:
            header = credentials.basic_header()
            assert header is not None
            headers["Authorization"] = header
            if credentials.username:
                query.append(("account", credentials.username))
        same_host = realm.host == upstream.url.host
        try:
            async with self._session.get(
                realm.with_query(query),
                headers=headers,
                allow_redirects=False,
                ssl=self._ssl[upstream.key] if same_host else True,
            ) as response:
                body = await response.content.read(TOKEN_BODY_LIMIT)
                status = response.status
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(detail={"upstream": upstream.key, "stage": "token"}) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(
                detail={"upstream": upstream.key, "stage": "token", "reason": type(exc).__name__}
            ) from exc
        if status in (401, 403):
            log.warning("token_refused", upstream=upstream.key, status=status,
                        token_realm=realm.host)  # fmt: skip
            raise UpstreamAuthFailed(
                f"the upstream token service refused the gateway ({status})",
                detail={"upstream": upstream.key, "status": status},
            )
        if status != 200:
            raise UpstreamUnreachable(
                f"the upstream token service answered {status}",
                detail={"upstream": upstream.key, "stage": "token", "status": status},
            )
        try:
            issued = parse_token_response(json.loads(body))
        except (ValueError, TokenResponseError) as exc:
            raise UpstreamUnreachable(
                "the upstream token service sent no usable token",
                detail={"upstream": upstream.key, "stage": "token"},
            ) from exc
        log.debug("token_fetched", upstream=upstream.key, ttl=round(issued.ttl))
        return issued

    async def _request(self, request: UpstreamRequest, send: Send) -> aiohttp.ClientResponse:
        upstream, route = request.upstream, request.route
        headers = request.headers
        if send.authorization:
            headers = CIMultiDict(headers)
            headers["Authorization"] = send.authorization
        started = time.perf_counter()
        try:
            response = await self._session.request(
                send.method,
                send.url,
                headers=headers,
                allow_redirects=False,
                ssl=self._ssl[upstream.key] if send.same_origin else True,
                data=request.body,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            self._metrics.upstream_requests.labels(upstream.key, route, "timeout").inc()
            raise UpstreamTimeout(detail={"upstream": upstream.key}) from exc
        except aiohttp.ClientError as exc:
            self._metrics.upstream_requests.labels(upstream.key, route, "error").inc()
            log.warning("upstream_unreachable", upstream=upstream.key, error=type(exc).__name__)
            raise UpstreamUnreachable(
                detail={"upstream": upstream.key, "reason": type(exc).__name__}
            ) from exc
        self._metrics.upstream_duration.labels(upstream.key, route).observe(
            time.perf_counter() - started
        )
        self._metrics.upstream_requests.labels(upstream.key, route, str(response.status)).inc()
        remaining = response.headers.get("RateLimit-Remaining")
        if remaining:
            with contextlib.suppress(ValueError):
                self._metrics.ratelimit_remaining.labels(upstream.key).set(
                    float(remaining.split(";", 1)[0])
                )
        return response


def _reply(response: aiohttp.ClientResponse, send: Send) -> Reply:
    """The parts of a response the auth flow decides on."""
    headers = response.headers
    return Reply(
        response.status,
        response.url,
        tuple(headers.getall("WWW-Authenticate", ())),
        headers.get("Location"),
        send.authorization,
    )


def _ssl_for(upstream: UpstreamSettings) -> ssl.SSLContext | bool:
    if upstream.url.scheme != "https":
        return True
    if not upstream.tls_verify:
        return False
    if upstream.ca_file is not None:
        return ssl.create_default_context(cafile=str(upstream.ca_file))
    return True
