"""Who is calling: one authenticator per ``clients.auth`` mode, behind one protocol.

An authenticator reads a :class:`Caller` (the ``Authorization`` header value and the caller's
address, never the aiohttp request) and returns an :class:`Authentication`: the principal,
and when the credentials were absent or unusable, why. What the principal may then do is the
policy's business (gatekeeper.py); what a failure is answered with (401, 429, 503) too.

==========  ===========================================================================
``none``    :class:`NoAuth`: everyone is the anonymous caller, nothing is counted
``basic``   :class:`BasicAuth`: no credentials (or ``Basic Og==``) is anonymous; any
            other value must be well-formed Basic credentials that log in (logins.py)
``token``   :class:`TokenAuth`: a bearer token the gateway signed, not expired
==========  ===========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from ..oci.authorization import parse_basic, parse_bearer
from .logins import LoginRefused, Logins
from .policy import ANONYMOUS, Policy, Principal
from .tokens import AccessClaims, InvalidToken, TokenService

Mode = Literal["none", "basic", "token"]
# missing: no credentials; invalid: unusable or wrong ones; limited: this address failed too
# often; busy: the shared bcrypt queue is full.
Failure = Literal["missing", "invalid", "limited", "busy"]


@dataclass(frozen=True)
class Caller:
    """What authentication may read of a request."""

    authorization: str | None
    address: str


@dataclass(frozen=True)
class Authentication:
    """The outcome: a principal, or the reason the credentials could not be used."""

    principal: Principal
    failure: Failure | None = None
    reason: str = "credentials accepted"
    retry_after: int | None = None
    claims: AccessClaims | None = None  # TokenAuth: what the token grants

    @property
    def result(self) -> Literal["granted", "denied", "invalid"]:
        """The ``registry_gateway_client_auth_total`` result before authorization."""
        if self.failure == "invalid":
            return "invalid"
        if self.failure is not None:
            return "denied"
        return "granted"


class Authenticator(Protocol):
    """``await authenticate(caller)`` → :class:`Authentication`."""

    mode: Mode

    async def authenticate(self, caller: Caller) -> Authentication: ...


class NoAuth:
    """``auth: none``: no credentials are read; every caller is anonymous."""

    mode: Mode = "none"

    async def authenticate(self, caller: Caller) -> Authentication:
        return Authentication(ANONYMOUS, reason="auth none")


class BasicAuth:
    """``auth: basic``: htpasswd users, with the failed-login limit per address."""

    mode: Mode = "basic"

    def __init__(self, logins: Logins) -> None:
        self.logins = logins

    async def authenticate(self, caller: Caller) -> Authentication:
        header = caller.authorization
        if header is None:
            return Authentication(ANONYMOUS, "missing", "no credentials")
        credentials = parse_basic(header)
        if credentials is None:
            return Authentication(ANONYMOUS, "invalid", "malformed credentials")
        if credentials.empty:
            return Authentication(ANONYMOUS, "missing", "no credentials")
        try:
            principal = await self.logins.login(
                caller.address, credentials.user, credentials.password
            )
        except LoginRefused as exc:
            failure: Failure = "invalid" if exc.kind == "invalid" else exc.kind
            return Authentication(ANONYMOUS, failure, exc.reason, exc.retry_after)
        return Authentication(principal)


class TokenAuth:
    """``auth: token``: access tokens signed by the gateway's token service."""

    mode: Mode = "token"

    def __init__(self, tokens: TokenService, policy: Policy) -> None:
        self.tokens = tokens
        self.policy = policy

    async def authenticate(self, caller: Caller) -> Authentication:
        header = caller.authorization
        token = parse_bearer(header) if header is not None else None
        if token is None:
            if header is not None and header.lstrip()[:7].lower() == "bearer ":
                return Authentication(ANONYMOUS, "invalid", "malformed token")
            return Authentication(ANONYMOUS, "missing", "no bearer token")
        try:
            claims = self.tokens.verify_access(token)
        except InvalidToken as exc:
            return Authentication(ANONYMOUS, "invalid", exc.reason)
        principal = self.policy.principal(claims.subject or None)
        return Authentication(principal, claims=claims)
