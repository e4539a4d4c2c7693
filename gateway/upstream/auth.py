"""The upstream auth flow, without I/O: what to send, and what an answer means.

``auth_flow`` is a generator in the manner of httpx's ``Auth.auth_flow``: it yields steps and
receives their results; ``UpstreamClient`` is the one loop that performs them. So every
decision below is a plain value in, value out, and ``tests/unit/upstream/test_auth.py`` walks
each branch as a table, without a server.

Steps and what the driver sends back:

- ``Send(url, method, authorization)`` → ``Reply`` (status, challenges, Location, what was sent)
- ``FetchToken(key, challenge, scopes, credentials)`` → ``Token`` (cached, joined or fetched)
- ``Reread()`` → ``Reread.Result`` (may a fresh read of the credentials differ, and the read)

Errors the driver meets while performing a step (``UpstreamError``) are thrown into the flow,
which either handles them (a refused token request with credentials: re-read them) or lets
them propagate. The flow returns the final ``Reply``; the driver returns its response.

Decisions (distribution auth/token.md; RFC 6750 for Bearer, RFC 7617 for Basic):

1. Pre-emptive: a static token is sent as Bearer; Basic once the upstream asked for Basic;
   a Bearer token for the upstream's last known challenge (cached, or fetched once for N
   concurrent requests); otherwise nothing.
2. A 401 with a Bearer challenge (and no static token): drop the token we sent if it is still
   the cached one (a concurrent request may have replaced it), take a token for the challenge's
   scopes, retry once. A token fetched just now for the same key and refused again is final.
3. A 401 with a Basic challenge and Basic credentials not yet sent: send them, once.
4. Refused (401/403 after the above, or the token service refused our credentials): ask the
   store whether a re-read may differ (a rotated file or Vault secret); if so forget every
   token fetched for the upstream and tenant, re-read, and run 1-3 once more.
5. Redirects (``redirects: follow``): at most ``MAX_REDIRECTS`` hops; Authorization goes only
   to the upstream's own origin (SECURITY: never to a CDN or another host).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal

from multidict import CIMultiDict
from yarl import URL

from ..credentials.base import UpstreamCredentials
from ..errors import UpstreamAuthFailed, UpstreamUnreachable
from ..oci.challenge import Challenge, find_challenge
from ..secret import Secret
from ..settings import UpstreamSettings
from .realms import credentials_allowed
from .tokens import TokenCache, TokenKey, token_key

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


# A request body (push): bytes, or the caller's body streamed through exactly once.
Body = bytes | AsyncIterable[bytes] | None


@dataclass(frozen=True)
class UpstreamRequest:
    """One logical request to an upstream, as the handler asked for it."""

    upstream: UpstreamSettings
    method: str
    url: URL
    headers: CIMultiDict[str]  # allow-listed caller headers plus our own; never Authorization
    scopes: tuple[str, ...]
    tenant: str | None
    route: str
    body: Body = field(default=None, compare=False, repr=False)

    @property
    def replayable(self) -> bool:
        """Bytes can be sent again (after a 401, a re-read, a redirect); a stream only once."""
        return self.body is None or isinstance(self.body, bytes)


@dataclass
class Exchange:
    """Outcome notes of one upstream exchange, for the canonical log line."""

    auth: str | None = None  # cached | fetched | static | basic | anonymous
    redirects: int = 0
    retried: bool = False  # refused, credentials re-read, tried once more


@dataclass(frozen=True)
class Send:
    """Send the request (or a redirect hop) with this Authorization."""

    url: URL
    method: str
    authorization: str | None = field(default=None, repr=False)
    same_origin: bool = True  # False: another host; the upstream's TLS settings do not apply


@dataclass(frozen=True)
class Reply:
    """What the flow needs to know of a response (the driver keeps the response itself)."""

    status: int
    url: URL
    challenges: tuple[str, ...] = ()  # WWW-Authenticate values
    location: str | None = None
    authorization: str | None = field(default=None, repr=False)  # what the request carried


@dataclass(frozen=True)
class FetchToken:
    """A bearer token for ``key``; the credentials go along only to an allowed realm."""

    key: TokenKey
    realm: URL
    challenge: Challenge
    scopes: tuple[str, ...]
    credentials: UpstreamCredentials | None  # None: an anonymous token request
    realm_refused: bool = False  # we hold Basic credentials, but this realm may not see them


@dataclass(frozen=True)
class Token:
    value: Secret
    how: Literal["cached", "fetched"]  # joining another request's fetch counts as cached


@dataclass(frozen=True)
class Reread:
    """The upstream refused our credentials: would a fresh read differ? If so, re-read."""

    @dataclass(frozen=True)
    class Result:
        may_differ: bool
        credentials: UpstreamCredentials | None = None


Step = Send | FetchToken | Reread
Flow = Generator[Step, Any, Reply]


def auth_flow(
    request: UpstreamRequest,
    credentials: UpstreamCredentials | None,
    tokens: TokenCache,
    exchange: Exchange,
) -> Flow:
    """Decide what to send, read each answer, and return the final reply (see the docstring)."""
    if not request.replayable:
        # A streamed body goes once (the push relay learns the challenge body-less first):
        # whatever answers it, a 401 or a redirect included, is the final reply.
        authorization, _ = yield from _preemptive(request, credentials, tokens, exchange)
        streamed: Reply = yield Send(request.url, request.method, authorization)
        return streamed
    failure: UpstreamAuthFailed | None = None
    reply: Reply | None = None
    try:
        reply = yield from _attempt(request, credentials, tokens, exchange)
        refused = reply.status in (401, 403)
    except UpstreamAuthFailed as exc:
        if credentials is None:
            raise
        refused, failure = True, exc
    if refused and credentials is not None:
        result: Reread.Result = yield Reread()
        if result.may_differ:
            exchange.retried = True
            tokens.drop_upstream(request.upstream.key, request.tenant)
            reply = yield from _attempt(request, result.credentials, tokens, exchange)
        elif failure is not None:
            raise failure
    assert reply is not None
    if request.upstream.redirects == "follow":
        reply = yield from _follow(request, reply, exchange)
    return reply


def _attempt(
    request: UpstreamRequest,
    credentials: UpstreamCredentials | None,
    tokens: TokenCache,
    exchange: Exchange,
) -> Flow:
    """Pre-emptive Authorization, then at most one answer to a 401 challenge."""
    key = request.upstream.key
    authorization, sent = yield from _preemptive(request, credentials, tokens, exchange)
    reply: Reply = yield Send(request.url, request.method, authorization)
    if reply.status != 401:
        return reply
    bearer = find_challenge(list(reply.challenges), "bearer")
    basic = find_challenge(list(reply.challenges), "basic")
    if bearer is not None and bearer.realm and not (credentials and credentials.token):
        tokens.remember_challenge(key, bearer)
        fetch = token_request(request, bearer, bearer.scopes or request.scopes, credentials)
        if sent is not None:
            if exchange.auth == "fetched" and fetch.key == sent[0]:
                return reply  # a token fetched just now was refused: fetching again won't help
            # Ours was refused: drop it, unless a concurrent request already replaced it.
            tokens.invalidate_if_current(*sent)
        token = yield from _take_token(fetch, exchange)
        retried: Reply = yield Send(request.url, request.method, f"Bearer {token.reveal()}")
        return retried
    if basic is not None and credentials and credentials.is_basic and authorization is None:
        tokens.remember_challenge(key, basic)
        exchange.auth = "basic"
        retried = yield Send(request.url, request.method, credentials.basic_header())
        return retried
    return reply


def _preemptive(
    request: UpstreamRequest,
    credentials: UpstreamCredentials | None,
    tokens: TokenCache,
    exchange: Exchange,
) -> Generator[Step, Any, tuple[str | None, tuple[TokenKey, Secret] | None]]:
    """The Authorization a warm request sends without waiting for a 401, and the token in it."""
    key = request.upstream.key
    if credentials is not None and credentials.token is not None:
        exchange.auth = "static"
        return credentials.bearer_header(), None
    if tokens.wants_basic(key) and credentials and credentials.is_basic:
        exchange.auth = "basic"
        return credentials.basic_header(), None
    challenge = tokens.known_challenge(key)
    if challenge is None or not request.scopes:
        exchange.auth = "anonymous"
        return None, None
    fetch = token_request(request, challenge, request.scopes, credentials)
    token = yield from _take_token(fetch, exchange)
    return f"Bearer {token.reveal()}", (fetch.key, token)


def _take_token(fetch: FetchToken, exchange: Exchange) -> Generator[Step, Any, Secret]:
    token: Token = yield fetch
    exchange.auth = token.how
    return token.value


def token_request(
    request: UpstreamRequest,
    challenge: Challenge,
    scopes: list[str] | tuple[str, ...],
    credentials: UpstreamCredentials | None,
) -> FetchToken:
    """Which token to ask for, from where, and whether our credentials may go along."""
    upstream = request.upstream
    assert challenge.realm is not None
    realm, valid, allowed_realm = _realm(challenge.realm, upstream.url, upstream.token_realms)
    if not valid:
        raise UpstreamAuthFailed(detail={"upstream": upstream.key, "reason": "bad realm"})
    basic = credentials is not None and credentials.is_basic
    # SECURITY: credentials only go to the upstream's own domain or a listed token realm.
    allowed = basic and allowed_realm
    key = token_key(
        upstream.key, request.tenant, challenge, list(scopes), credentials, authenticated=allowed
    )
    return FetchToken(
        key,
        realm,
        challenge,
        tuple(scopes),
        credentials if allowed else None,
        realm_refused=basic and not allowed,
    )


@functools.lru_cache(maxsize=256)  # realms are per upstream: few, and asked on every request
def _realm(realm: str, upstream_url: URL, token_realms: tuple[str, ...]) -> tuple[URL, bool, bool]:
    """The realm URL, whether it is an http(s) URL, and whether credentials may go there."""
    url = URL(realm)
    if url.scheme not in ("http", "https") or not url.host:
        return url, False, False
    return url, True, credentials_allowed(url, upstream_url, token_realms)


def _follow(request: UpstreamRequest, reply: Reply, exchange: Exchange) -> Flow:
    """Follow up to MAX_REDIRECTS hops; credentials never leave the upstream's origin."""
    method = request.method
    origin = request.upstream.url.origin()
    while reply.status in REDIRECT_STATUSES:
        if not reply.location:
            return reply
        if exchange.redirects >= MAX_REDIRECTS:
            raise UpstreamUnreachable(
                "too many redirects from upstream", detail={"upstream": request.upstream.key}
            )
        target = reply.url.join(URL(reply.location))
        if target.scheme not in ("http", "https"):
            raise UpstreamUnreachable("upstream redirected to a non-HTTP URL")
        exchange.redirects += 1
        same_origin = target.origin() == origin
        if reply.status == 303 and method != "HEAD":
            method = "GET"  # RFC 9110 §15.4.4
        # SECURITY: no Authorization to another host (a blob CDN gets a signed URL instead).
        authorization = reply.authorization if same_origin else None
        reply = yield Send(target, method, authorization, same_origin)
    return reply
