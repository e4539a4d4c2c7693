"""Logins: a password or a refresh token in, a principal out, under the failed-login limit.

Both ``/v2/`` Basic credentials and the ``/token`` service log in here, so one address meets
one limit whichever door it knocks on. A refusal says why in a :class:`LoginRefused` whose
``kind`` picks the answer: ``invalid`` (401 / ``invalid_grant``), ``limited`` (429, this
address failed too often) or ``busy`` (503, the shared bcrypt queue is full: see
passwords.py).
"""

from __future__ import annotations

import hmac
from typing import Literal

from .htpasswd import Htpasswd
from .passwords import PasswordCheckBusy, PasswordChecker
from .policy import Policy, Principal
from .ratelimit import LoginLimiter
from .tokens import InvalidToken, IssuedToken, TokenService

RefusalKind = Literal["invalid", "limited", "busy"]
BUSY_RETRY_AFTER = 1


class LoginRefused(Exception):
    """A password or refresh token was not accepted; ``retry_after`` set unless ``invalid``."""

    def __init__(
        self, reason: str, retry_after: int | None = None, kind: RefusalKind | None = None
    ) -> None:
        self.reason = reason
        self.retry_after = retry_after
        self.kind: RefusalKind = kind or ("invalid" if retry_after is None else "limited")
        super().__init__(reason)

    @property
    def result(self) -> Literal["invalid", "denied"]:
        """The ``registry_gateway_client_auth_total`` result: denied when not even checked."""
        return "invalid" if self.kind == "invalid" else "denied"


class Logins:
    """Checks passwords (and refresh tokens, when ``tokens`` is set) for ``users``."""

    def __init__(
        self,
        users: Htpasswd,
        policy: Policy,
        limiter: LoginLimiter,
        *,
        tokens: TokenService | None = None,
        passwords: PasswordChecker | None = None,
    ) -> None:
        self.users = users
        self.policy = policy
        self.limiter = limiter
        self.tokens = tokens
        self.passwords = passwords or PasswordChecker(users)

    def _check_limit(self, address: str) -> None:
        retry = self.limiter.retry_after(address)
        if retry is not None:
            raise LoginRefused("too many failed logins from this address", retry)

    async def login(self, address: str, user: str, password: str) -> Principal:
        """Check a password; LoginRefused when wrong, limited or the bcrypt queue is full."""
        self._check_limit(address)
        try:
            verified = await self.passwords.verify(user, password)
        except PasswordCheckBusy:
            raise LoginRefused(
                "too many logins in progress; try again shortly", BUSY_RETRY_AFTER, "busy"
            ) from None
        if not verified:
            self.limiter.failed(address)
            raise LoginRefused("wrong user name or password")
        return self.policy.principal(user)

    def issue_refresh(self, user: str) -> IssuedToken:
        """A refresh token bound to ``user``'s current htpasswd entry (after a login)."""
        stored = self.users.get(user)
        if self.tokens is None or stored is None:
            raise LoginRefused("refresh tokens are not available")
        return self.tokens.issue_refresh(user, stored)

    def refresh_login(self, address: str, token: str) -> Principal:
        """Check a refresh token; it must match the user's current htpasswd entry."""
        self._check_limit(address)
        if self.tokens is None:
            raise LoginRefused("refresh tokens are not available")
        try:
            claims = self.tokens.verify_refresh(token)
        except InvalidToken as exc:
            self.limiter.failed(address)
            raise LoginRefused(f"refresh token refused: {exc.reason}") from exc
        stored = self.users.get(claims.subject)
        expected = self.tokens.binding(claims.subject, stored) if stored else ""
        if not hmac.compare_digest(expected, claims.binding):
            self.limiter.failed(address)
            raise LoginRefused("refresh token revoked: the user or password changed")
        return self.policy.principal(claims.subject)
