"""The authentication and authorization step every ``/v2/`` request passes, and logins.

``check`` turns a request (and the target it routes to, None for ``/v2/`` itself) into a
:class:`Decision`: the principal, and the error to answer with when it may not proceed:

=====================  ==========================================================
``basic``              no credentials: anonymous (401 ``Basic`` unless a rule lets
                       anonymous pull); wrong ones: 401; a limited address: 429
``token``              no bearer token: 401 ``Bearer`` challenge; a bad one: 401
                       ``error="invalid_token"``; one whose ``access`` lacks the
                       path name: 401 ``error="insufficient_scope"``
both                   rules deny an authenticated principal: 403 ``DENIED``;
                       rules deny an anonymous caller: 401
=====================  ==========================================================

Each decision writes one audit line (``access_decided``) and counts
``registry_gateway_client_auth_total``; passwords and tokens never reach either.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from ..errors import Denied, RegistryError, TooManyRequests, Unauthorized
from ..log import get_logger
from ..metrics import Metrics
from ..routing import Router, Target
from ..settings import Settings, VaultCredentialsSpec
from .htpasswd import Htpasswd
from .passwords import PasswordChecker
from .policy import ANONYMOUS, Policy, Principal
from .ratelimit import LoginLimiter, client_address, parse_networks
from .signing import generate_signing_key, load_signing_key
from .tokens import InvalidToken, IssuedToken, TokenService

log = get_logger("gateway.access")

Result = Literal["granted", "denied", "invalid"]
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


class LoginRefused(Exception):
    """A password or refresh token was not accepted; ``retry_after`` set when rate-limited."""

    def __init__(self, reason: str, retry_after: int | None = None) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


@dataclass(frozen=True)
class Decision:
    """Who is calling, and the error to answer with if they may not proceed."""

    principal: Principal
    error: RegistryError | None = None

    def enforce(self) -> None:
        if self.error is not None:
            raise self.error


def quoted(value: str) -> str:
    """An RFC 7230 quoted-string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_basic(header: str) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` → (user, password); None when malformed."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def is_empty(pair: tuple[str, str] | None) -> bool:
    """``Basic Og==`` (":"): what containers/image sends when it has no credentials."""
    return pair == ("", "")


def bearer_token(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


class Gatekeeper:
    """Authenticates callers and applies the access policy (``clients`` settings)."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics,
        router: Router,
        users: Htpasswd | None = None,
        tokens: TokenService | None = None,
        limiter: LoginLimiter | None = None,
    ) -> None:
        clients = settings.clients
        self.mode = clients.auth
        self.service = clients.token.service
        self.public_url = settings.public_url
        self.router = router
        self.users = users
        self.tokens = tokens
        self.passwords = PasswordChecker(users) if users is not None else None
        self.limiter = limiter or LoginLimiter(
            clients.login_limit.failures, clients.login_limit.window
        )
        self.trusted_proxies = parse_networks(clients.trusted_proxies)
        self.metrics = metrics
        tenant_upstreams = {
            key
            for key, upstream in settings.upstreams.items()
            if isinstance(upstream.credentials, VaultCredentialsSpec)
            and upstream.credentials.templated
        }
        self.policy = Policy(clients, tenant_upstreams)

    @classmethod
    def from_settings(cls, settings: Settings, *, metrics: Metrics, router: Router) -> Gatekeeper:
        """Read the htpasswd file and the signing key (both validated by load_settings)."""
        clients = settings.clients
        if clients.auth == "none":
            return cls(settings, metrics=metrics, router=router)
        assert clients.htpasswd is not None
        users = Htpasswd(clients.htpasswd)
        tokens = None
        if clients.auth == "token":
            key_file = clients.token.key_file
            key = load_signing_key(key_file.read_bytes()) if key_file else generate_signing_key()
            if key.generated:
                note = "tokens die with this process; run one replica or set key_file"
                log.warning("token_key_generated", kid=key.kid, note=note)
            tokens = TokenService(
                key,
                service=clients.token.service,
                issuer=clients.token.issuer,
                ttl=clients.token.ttl,
                refresh_ttl=clients.token.refresh_ttl,
            )
        return cls(settings, metrics=metrics, router=router, users=users, tokens=tokens)

    async def watch_users(self, _app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: re-read the htpasswd file in the background while the app runs."""
        task = None
        if self.users is not None:
            task = asyncio.create_task(self.users.watch(), name="htpasswd-watch")
        yield
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- who is calling --------------------------------------------------------------------

    def address(self, request: web.Request) -> str:
        """The caller's address for rate limiting (see ratelimit.client_address)."""
        forwarded = request.headers.getall("X-Forwarded-For", [])
        return client_address(request.remote, forwarded, self.trusted_proxies)

    async def login(self, address: str, user: str, password: str) -> Principal:
        """Check a password; LoginRefused when wrong or when ``address`` is limited."""
        assert self.passwords is not None
        retry = self.limiter.retry_after(address)
        if retry is not None:
            raise LoginRefused("too many failed logins from this address", retry)
        if not await self.passwords.verify(user, password):
            self.limiter.failed(address)
            raise LoginRefused("wrong user name or password")
        return self.policy.principal(user)

    def issue_refresh(self, user: str) -> IssuedToken:
        """A refresh token bound to ``user``'s current htpasswd entry."""
        assert self.tokens is not None and self.users is not None
        stored = self.users.get(user)
        assert stored is not None, "issue_refresh follows a successful login"
        return self.tokens.issue_refresh(user, stored)

    def refresh_login(self, address: str, token: str) -> Principal:
        """Check a refresh token; it must match the user's current htpasswd entry."""
        assert self.tokens is not None and self.users is not None
        retry = self.limiter.retry_after(address)
        if retry is not None:
            raise LoginRefused("too many failed logins from this address", retry)
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

    # --- challenges ------------------------------------------------------------------------

    def realm(self, request: web.Request) -> str:
        """``<public_url or request base>/token``; only X-Forwarded-Proto is taken from proxies."""
        if self.public_url is not None:
            return f"{str(self.public_url).rstrip('/')}/token"
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        scheme = proto if proto in ("http", "https") else request.scheme
        host = request.host if _HOST.fullmatch(request.host) else "localhost"
        return f"{scheme}://{host}/token"

    def challenge_basic(self) -> str:
        return f'Basic realm={quoted(self.service)}, charset="UTF-8"'  # RFC 7617

    def challenge(
        self, request: web.Request, scope: str | None = None, error: str | None = None
    ) -> str:
        """The ``WWW-Authenticate`` value for a 401 in the configured mode."""
        if self.mode == "basic":
            return self.challenge_basic()
        parts = [f"realm={quoted(self.realm(request))}", f"service={quoted(self.service)}"]
        if scope is not None:
            parts.append(f"scope={quoted(scope)}")
        if error is not None:
            parts.append(f"error={quoted(error)}")  # RFC 6750 §3.1
        return "Bearer " + ",".join(parts)

    # --- the /v2/ decision -----------------------------------------------------------------

    async def check(
        self, request: web.Request, target: Target | None, action: str = "pull"
    ) -> Decision:
        """Authenticate the caller and authorize ``action`` on ``target`` (None: ``/v2/``)."""
        if self.mode == "none":
            return Decision(ANONYMOUS)
        if self.mode == "basic":
            decision, result, reason = await self._check_basic(request, target, action)
        else:
            decision, result, reason = self._check_token(request, target, action)
        principal = decision.principal
        self.metrics.client_auth.labels(self.mode, result).inc()
        log.info(
            "access_decided",
            scheme=self.mode,
            principal=principal.label,
            tenant=principal.tenant,
            upstream=target.upstream if target else None,
            name=target.name if target else None,
            action=action if target else None,
            result=result,
            reason=reason,
        )
        return decision

    def _unauthorized(
        self,
        request: web.Request,
        message: str,
        target: Target | None,
        action: str,
        error: str | None = None,
    ) -> Unauthorized:
        scope = detail = None
        if target is not None:
            # Scopes name the repository as the caller wrote it (package docstring).
            scope = f"repository:{target.caller_name}:{action}"
            detail = {"type": "repository", "name": target.caller_name, "action": action}
        challenge = {"WWW-Authenticate": self.challenge(request, scope, error)}
        return Unauthorized(message, detail=detail, headers=challenge)

    def _authorize(
        self, request: web.Request, principal: Principal, target: Target | None, action: str
    ) -> tuple[Decision, Result, str]:
        if target is None:
            return Decision(principal), "granted", "credentials accepted"
        verdict = self.policy.verdict(principal, target.upstream, target.name)
        if verdict.permits(action):
            return Decision(principal), "granted", verdict.reason
        if principal.authenticated:
            error: RegistryError = Denied(detail={"name": target.caller_name, "action": action})
        else:
            scope_error = "insufficient_scope" if self.mode == "token" else None
            error = self._unauthorized(
                request, "authentication required", target, action, scope_error
            )
        return Decision(principal, error), "denied", verdict.reason

    async def _check_basic(
        self, request: web.Request, target: Target | None, action: str
    ) -> tuple[Decision, Result, str]:
        header = request.headers.get("Authorization")
        pair = parse_basic(header) if header is not None else None
        if header is None or is_empty(pair):
            if target is None:
                error = self._unauthorized(request, "authentication required", None, action)
                return Decision(ANONYMOUS, error), "denied", "no credentials"
            return self._authorize(request, ANONYMOUS, target, action)
        if pair is None:
            error = self._unauthorized(request, "malformed Basic credentials", target, action)
            return Decision(ANONYMOUS, error), "invalid", "malformed credentials"
        try:
            principal = await self.login(self.address(request), *pair)
        except LoginRefused as exc:
            if exc.retry_after is not None:
                limited = TooManyRequests(
                    "too many failed logins; try again later",
                    headers={"Retry-After": str(exc.retry_after)},
                )
                return Decision(ANONYMOUS, limited), "denied", exc.reason
            error = self._unauthorized(request, "wrong user name or password", target, action)
            return Decision(ANONYMOUS, error), "invalid", exc.reason
        return self._authorize(request, principal, target, action)

    def _check_token(
        self, request: web.Request, target: Target | None, action: str
    ) -> tuple[Decision, Result, str]:
        assert self.tokens is not None
        token = bearer_token(request.headers.get("Authorization", ""))
        if token is None:
            error = self._unauthorized(request, "authentication required", target, action)
            return Decision(ANONYMOUS, error), "denied", "no bearer token"
        try:
            claims = self.tokens.verify_access(token)
        except InvalidToken as exc:
            error = self._unauthorized(request, exc.reason, target, action, "invalid_token")
            return Decision(ANONYMOUS, error), "invalid", exc.reason
        principal = self.policy.principal(claims.subject or None)
        decision, result, reason = self._authorize(request, principal, target, action)
        if result == "granted" and target and not claims.covers(target.caller_name, action):
            message = "the token does not cover this repository"
            error = self._unauthorized(request, message, target, action, "insufficient_scope")
            return Decision(principal, error), "denied", "token scope lacks the name"
        return decision, result, reason
