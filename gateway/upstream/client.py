"""The one place that talks HTTP to upstream registries.

It attaches credentials (Basic, a static bearer, or a bearer from the token flow), answers
401 challenges once, follows redirects without leaking credentials, and maps transport
failures to 502/504. Bodies are not read here: the caller streams them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

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
from ..oci.challenge import Challenge, find_challenge
from ..secret import Secret
from ..settings import Settings, UpstreamSettings
from .concurrency import UpstreamSlots
from .realms import credentials_allowed
from .tokens import TokenCache, TokenKey, TokenResponseError, parse_token_response, token_key

log = get_logger(__name__)

USER_AGENT = f"registry-gateway/{__version__}"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
TOKEN_BODY_LIMIT = 1 << 20


@dataclass
class Exchange:
    """Outcome notes of one upstream exchange, for the canonical log line."""

    auth: str | None = None  # cached | fetched | static | basic | anonymous
    redirects: int = 0
    credentials: str | None = None  # identity of the credentials used, never the secret
    retried: bool = False
    notes: list[str] = field(default_factory=list)


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
        self._settings = settings
        self._credentials = credentials
        self._tokens = tokens
        self._metrics = metrics
        self._ssl = {key: _ssl_for(up) for key, up in settings.upstreams.items()}

    async def send(
        self,
        upstream: UpstreamSettings,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: CIMultiDict[str],
        scopes: list[str],
        tenant: str | None,
        route: str,
        exchange: Exchange,
    ) -> aiohttp.ClientResponse:
        """Send one logical request; the response is open and must be released by the caller.

        Under ``max_concurrency`` a slot is held from here until the response is released.
        """
        slot = await self._slots.acquire(upstream.key) if self._slots else None
        if slot is None:
            return await self._send(
                upstream,
                method,
                path,
                query=query,
                headers=headers,
                scopes=scopes,
                tenant=tenant,
                route=route,
                exchange=exchange,
            )
        try:
            response = await self._send(
                upstream,
                method,
                path,
                query=query,
                headers=headers,
                scopes=scopes,
                tenant=tenant,
                route=route,
                exchange=exchange,
            )
        except BaseException:
            slot.release()
            raise
        slot.hold(response)
        return response

    async def _send(
        self,
        upstream: UpstreamSettings,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: CIMultiDict[str],
        scopes: list[str],
        tenant: str | None,
        route: str,
        exchange: Exchange,
    ) -> aiohttp.ClientResponse:
        url = URL(f"{upstream.url}{path}")
        if query:
            url = url.with_query(query)
        credentials = await self._get_credentials(upstream, tenant)
        auth_error: UpstreamAuthFailed | None = None
        try:
            response = await self._authorized(
                upstream, method, url, headers, scopes, tenant, credentials, route, exchange
            )
            refused = response.status in (401, 403)
        except UpstreamAuthFailed as exc:
            if credentials is None:
                raise
            refused, response, auth_error = True, None, exc
        # The upstream (or its token service) refused what we hold; a rotated secret may fix
        # it: forget the secret and every token fetched with it, re-read once, retry once.
        if (
            refused
            and credentials is not None
            and await self._credentials.rejected(upstream.key, tenant)
        ):
            exchange.retried = True
            if response is not None:
                response.release()
            self._tokens.drop_upstream(upstream.key, tenant)
            log.info("credentials_refused_rereading", upstream=upstream.key)
            fresh = await self._get_credentials(upstream, tenant)
            response = await self._authorized(
                upstream, method, url, headers, scopes, tenant, fresh, route, exchange
            )
        elif auth_error is not None:
            raise auth_error
        assert response is not None
        if upstream.redirects == "follow":
            response = await self._follow(upstream, method, response, headers, route, exchange)
        return response

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

    async def _authorized(
        self,
        upstream: UpstreamSettings,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        scopes: list[str],
        tenant: str | None,
        credentials: UpstreamCredentials | None,
        route: str,
        exchange: Exchange,
    ) -> aiohttp.ClientResponse:
        exchange.credentials = credentials.identity if credentials else None
        auth, key = await self._preemptive(upstream, credentials, scopes, tenant, exchange)
        response = await self._request(upstream, method, url, headers, auth, route)
        if response.status != 401:
            return response
        challenge = find_challenge(response.headers.getall("WWW-Authenticate", []), "bearer")
        basic = find_challenge(response.headers.getall("WWW-Authenticate", []), "basic")
        if challenge is not None and challenge.realm and not (credentials and credentials.token):
            self._tokens.remember_challenge(upstream.key, challenge)
            wanted = challenge.scopes or scopes
            if (
                exchange.auth == "fetched"
                and key is not None
                and key[2:5] == (challenge.realm, challenge.service or "", " ".join(sorted(wanted)))
            ):
                return response  # a token fetched just now was refused: fetching again won't help
            if key is not None:
                # Our cached token was refused: drop it, unless a concurrent request has
                # already replaced it with a fresh one (that one we use).
                current = self._tokens.tokens.peek(key)
                if current is not None and auth == f"Bearer {current.reveal()}":
                    self._tokens.tokens.invalidate(key)
            response.release()
            # No token was sent (a cold request) or ours was dropped: either way, take the
            # cached one or join the fetch already in flight; N cold requests, one fetch.
            token, key = await self._token(
                upstream, challenge, wanted, tenant, credentials, exchange
            )
            return await self._request(
                upstream, method, url, headers, f"Bearer {token.reveal()}", route
            )
        if basic is not None and credentials and credentials.is_basic and auth is None:
            self._tokens.remember_challenge(upstream.key, basic)
            exchange.auth = "basic"
            response.release()
            return await self._request(
                upstream, method, url, headers, credentials.basic_header(), route
            )
        return response

    async def _preemptive(
        self,
        upstream: UpstreamSettings,
        credentials: UpstreamCredentials | None,
        scopes: list[str],
        tenant: str | None,
        exchange: Exchange,
    ) -> tuple[str | None, TokenKey | None]:
        """The Authorization a warm request can send without waiting for a 401."""
        if credentials is not None and credentials.token is not None:
            exchange.auth = "static"
            return credentials.bearer_header(), None
        if self._tokens.wants_basic(upstream.key) and credentials and credentials.is_basic:
            exchange.auth = "basic"
            return credentials.basic_header(), None
        challenge = self._tokens.known_challenge(upstream.key)
        if challenge is None or not scopes:
            exchange.auth = "anonymous"
            return None, None
        token, key = await self._token(upstream, challenge, scopes, tenant, credentials, exchange)
        return f"Bearer {token.reveal()}", key

    async def _token(
        self,
        upstream: UpstreamSettings,
        challenge: Challenge,
        scopes: list[str],
        tenant: str | None,
        credentials: UpstreamCredentials | None,
        exchange: Exchange,
    ) -> tuple[Secret, TokenKey]:
        assert challenge.realm is not None
        realm = URL(challenge.realm)
        if realm.scheme not in ("http", "https") or not realm.host:
            raise UpstreamAuthFailed(detail={"upstream": upstream.key, "reason": "bad realm"})
        send_creds = (
            credentials is not None
            and credentials.is_basic
            and credentials_allowed(realm, upstream.url, upstream.token_realms)
        )
        if credentials is not None and credentials.is_basic and not send_creds:
            log.warning("token_realm_not_allowed", upstream=upstream.key, token_realm=realm.host)
        key = token_key(
            upstream.key, tenant, challenge, scopes, credentials, authenticated=send_creds
        )

        async def fetch() -> tuple[Secret, float]:
            issued = await self._fetch_token(
                upstream, realm, challenge, scopes, credentials if send_creds else None
            )
            return issued.value, issued.ttl

        try:
            token, how = await self._tokens.tokens.get_or_load(key, fetch)
        except UpstreamError:
            self._metrics.upstream_tokens.labels(upstream.key, "error").inc()
            raise
        # Waiting on another request's fetch is not a fetch of our own.
        outcome = "fetched" if how == LOADED else "cached"
        self._metrics.upstream_tokens.labels(upstream.key, outcome).inc()
        exchange.auth = outcome
        return token, key

    async def _fetch_token(
        self,
        upstream: UpstreamSettings,
        realm: URL,
        challenge: Challenge,
        scopes: list[str],
        credentials: UpstreamCredentials | None,
    ) -> Any:
        query: list[tuple[str, str]] = list(realm.query.items())
        if challenge.service:
            query.append(("service", challenge.service))
        query.extend(("scope", scope) for scope in scopes)
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

    async def _request(
        self,
        upstream: UpstreamSettings,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        authorization: str | None,
        route: str,
        *,
        ssl_context: ssl.SSLContext | bool | None = None,
    ) -> aiohttp.ClientResponse:
        sent = CIMultiDict(headers)
        if authorization:
            sent["Authorization"] = authorization
        started = time.perf_counter()
        try:
            response = await self._session.request(
                method,
                url,
                headers=sent,
                allow_redirects=False,
                ssl=self._ssl[upstream.key] if ssl_context is None else ssl_context,
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

    async def _follow(
        self,
        upstream: UpstreamSettings,
        method: str,
        response: aiohttp.ClientResponse,
        headers: CIMultiDict[str],
        route: str,
        exchange: Exchange,
    ) -> aiohttp.ClientResponse:
        """Follow up to MAX_REDIRECTS hops; credentials never leave the upstream's origin."""
        while response.status in REDIRECT_STATUSES:
            location = response.headers.get("Location")
            if not location:
                return response
            if exchange.redirects >= MAX_REDIRECTS:
                response.release()
                raise UpstreamUnreachable(
                    "too many redirects from upstream", detail={"upstream": upstream.key}
                )
            target = response.url.join(URL(location))
            response.release()
            if target.scheme not in ("http", "https"):
                raise UpstreamUnreachable("upstream redirected to a non-HTTP URL")
            exchange.redirects += 1
            same_origin = target.origin() == upstream.url.origin()
            if response.status == 303:
                method = "GET" if method != "HEAD" else method
            # SECURITY: no Authorization (or any credential) to another host: the
            # headers here are the allow-listed caller headers only (OCI spec "API").
            authorization = None
            if same_origin and (prior := response.request_info.headers.get("Authorization")):
                authorization = prior
            response = await self._request(
                upstream,
                method,
                target,
                headers,
                authorization,
                route,
                ssl_context=None if same_origin else True,
            )
        return response


def _ssl_for(upstream: UpstreamSettings) -> ssl.SSLContext | bool:
    if upstream.url.scheme != "https":
        return True
    if not upstream.tls_verify:
        return False
    if upstream.ca_file is not None:
        return ssl.create_default_context(cafile=str(upstream.ca_file))
    return True


async def close_quietly(response: aiohttp.ClientResponse) -> None:
    """Drop an upstream connection whose body we will not read to the end."""
    response.close()
    await asyncio.sleep(0)
