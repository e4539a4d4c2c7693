"""The upstream token flow (distribution auth/token.md) and the bearer-token cache.

Tokens are cached per (upstream, tenant, realm, service, scope, credential identity) until a
little before they expire; N concurrent requests that need one token cause one fetch.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from ..caching import CoalescingCache
from ..credentials.base import UpstreamCredentials
from ..oci.challenge import Challenge
from ..secret import Secret

MIN_EXPIRES_IN = 60  # token.md: "defaults to 60 seconds"; never fewer


class TokenKey(NamedTuple):
    upstream: str
    tenant: str | None
    realm: str
    service: str
    scope: str
    identity: str


@dataclass(frozen=True, repr=False)
class IssuedToken:
    value: Secret
    ttl: float

    def __repr__(self) -> str:
        return f"IssuedToken(ttl={self.ttl:.0f})"


class TokenResponseError(ValueError):
    """A token server answered 200 with something that holds no token."""


def parse_token_response(body: Any, *, now: Callable[[], float] = time.time) -> IssuedToken:
    """Read ``access_token`` (preferred, as distribution's client does) or ``token``."""
    if not isinstance(body, dict):
        raise TokenResponseError("token response is not a JSON object")
    raw = body.get("access_token") or body.get("token")
    if not isinstance(raw, str) or not raw:
        raise TokenResponseError("token response has neither token nor access_token")
    expires_in = body.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = MIN_EXPIRES_IN
    expires_in = max(float(expires_in), MIN_EXPIRES_IN)
    age = 0.0
    issued_at = body.get("issued_at")
    if isinstance(issued_at, str):
        try:
            issued = datetime.fromisoformat(issued_at.replace("Z", "+00:00")).timestamp()
            age = min(max(now() - issued, 0.0), expires_in)
        except ValueError:
            age = 0.0
    remaining = expires_in - age
    # Refresh a little early so a token never expires between cache and upstream.
    skew = min(30.0, remaining * 0.1)
    return IssuedToken(Secret(raw), remaining - skew)


def token_key(
    upstream: str,
    tenant: str | None,
    challenge: Challenge,
    scopes: list[str],
    credentials: UpstreamCredentials | None,
    *,
    authenticated: bool,
) -> TokenKey:
    return TokenKey(
        upstream,
        tenant,
        challenge.realm or "",
        challenge.service or "",
        " ".join(sorted(scopes)),
        _identity(credentials) if (credentials and authenticated) else "anonymous",
    )


@functools.lru_cache(maxsize=256)  # the same few credentials on every request: hash them once
def _identity(credentials: UpstreamCredentials) -> str:
    return credentials.identity


class TokenCache:
    """Bearer tokens by key, plus the last Bearer challenge each upstream sent."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.tokens: CoalescingCache[TokenKey, Secret] = CoalescingCache(maxsize=8192, clock=clock)
        self._challenges: dict[str, Challenge] = {}
        self._basic: set[str] = set()

    def remember_challenge(self, upstream: str, challenge: Challenge) -> None:
        if challenge.scheme == "bearer":
            self._challenges[upstream] = Challenge("bearer", {
                k: v for k, v in challenge.params.items() if k in ("realm", "service")
            })  # fmt: skip
            self._basic.discard(upstream)
        elif challenge.scheme == "basic":
            self._basic.add(upstream)
            self._challenges.pop(upstream, None)

    def known_challenge(self, upstream: str) -> Challenge | None:
        return self._challenges.get(upstream)

    def wants_basic(self, upstream: str) -> bool:
        return upstream in self._basic

    def peek(self, key: TokenKey) -> Secret | None:
        """The cached token for ``key``, if fresh; never loads."""
        return self.tokens.peek(key)

    def invalidate_if_current(self, key: TokenKey, refused: Secret) -> bool:
        """Forget ``refused`` if it is still the cached token for ``key``.

        A concurrent request may already have replaced it with a fresh one: that one stays.
        """
        current = self.tokens.peek(key)
        if current is None or current != refused:  # Secret equality is constant-time
            return False
        self.tokens.invalidate(key)
        return True

    def drop_upstream(self, upstream: str, tenant: str | None) -> int:
        """Forget every token fetched for ``upstream`` (and tenant): credentials changed."""
        return self.tokens.invalidate_where(lambda k: k.upstream == upstream and k.tenant == tenant)
