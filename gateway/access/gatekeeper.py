"""The authentication and authorization step every ``/v2/`` request passes.

``decide`` turns a :class:`~.authenticators.Caller` (and the target it routes to, None for
``/v2/`` itself) into a :class:`Decision`: the principal, and the error to answer with when it
may not proceed. ``check`` is the aiohttp edge: it reads the caller from the request.

=====================  ==========================================================
``basic``              no credentials: anonymous (401 ``Basic`` unless a rule lets
                       anonymous pull); wrong or malformed ones: 401; a limited
                       address: 429; the bcrypt queue full: 503
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
from .authenticators import (
    Authentication,
    Authenticator,
    BasicAuth,
    Caller,
    NoAuth,
    TokenAuth,
)
from .files import load_files
from .grants import TokenGrants, clip
from .htpasswd import Htpasswd
from .logins import Logins
from .policy import Policy, Principal
from .ratelimit import LoginLimiter, client_address, parse_networks
from .tokens import TokenService

log = get_logger("gateway.access")

Result = Literal["granted", "denied", "invalid"]
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


class LoginsBusy(RegistryError):
    """The shared bcrypt queue is full: the gateway's capacity, not this caller's rate."""

    code, status, default_message = "UNAVAILABLE", 503, "too many logins in progress"


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


def tenant_upstreams(settings: Settings) -> frozenset[str]:
    """Upstreams whose credentials are a Vault path templated with ``{tenant}``."""
    return frozenset(
        key
        for key, upstream in settings.upstreams.items()
        if isinstance(upstream.credentials, VaultCredentialsSpec) and upstream.credentials.templated
    )


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
        self.limiter = limiter or LoginLimiter(
            clients.login_limit.failures, clients.login_limit.window
        )
        self.trusted_proxies = parse_networks(clients.trusted_proxies)
        self.metrics = metrics
        self.policy = Policy(clients, tenant_upstreams(settings))
        self.logins = (
            Logins(users, self.policy, self.limiter, tokens=tokens) if users is not None else None
        )
        self.grants: TokenGrants | None = None
        self.authenticator: Authenticator = NoAuth()
        if self.mode == "basic" and self.logins is not None:
            self.authenticator = BasicAuth(self.logins)
        elif self.mode == "token" and self.logins is not None and tokens is not None:
            self.authenticator = TokenAuth(tokens, self.policy)
            self.grants = TokenGrants(
                logins=self.logins,
                tokens=tokens,
                policy=self.policy,
                router=router,
                metrics=metrics,
                max_field_size=settings.limits.max_field_size,
            )
        elif self.mode != "none":
            raise ValueError(f"clients.auth {self.mode} needs users (and tokens)")

    def use_limiter(self, limiter: LoginLimiter) -> None:
        """Count failed logins with ``limiter`` (the cluster's shared one) from now on."""
        self.limiter = limiter
        if self.logins is not None:
            self.logins.limiter = limiter

    @classmethod
    def from_settings(cls, settings: Settings, *, metrics: Metrics, router: Router) -> Gatekeeper:
        """Load the htpasswd file and the signing key once; ConfigError when unusable."""
        clients = settings.clients
        files = load_files(clients)
        tokens = None
        if files.key is not None:
            if files.key.generated:
                note = "tokens die with this process; run one replica or set key_file"
                log.warning("token_key_generated", kid=files.key.kid, note=note)
            tokens = TokenService(
                files.key,
                service=clients.token.service,
                issuer=clients.token.issuer,
                ttl=clients.token.ttl,
                refresh_ttl=clients.token.refresh_ttl,
            )
        return cls(settings, metrics=metrics, router=router, users=files.users, tokens=tokens)

    async def watch_users(self, _app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: re-read the htpasswd file in the background while the app runs."""
        task = None
        if self.users is not None:
            task = asyncio.create_task(self.users.watch(), name="htpasswd-watch")
        yield
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- the aiohttp edge ------------------------------------------------------------------

    def address(self, request: web.Request) -> str:
        """The caller's address for rate limiting (see ratelimit.client_address)."""
        forwarded = request.headers.getall("X-Forwarded-For", [])
        return client_address(request.remote, forwarded, self.trusted_proxies)

    def caller(self, request: web.Request) -> Caller:
        return Caller(request.headers.get("Authorization"), self.address(request))

    def realm(self, request: web.Request) -> str:
        """``<public_url or request base>/token``; only X-Forwarded-Proto is taken from proxies."""
        if self.public_url is not None:
            return f"{str(self.public_url).rstrip('/')}/token"
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        scheme = proto if proto in ("http", "https") else request.scheme
        host = request.host if _HOST.fullmatch(request.host) else "localhost"
        return f"{scheme}://{host}/token"

    async def check(
        self, request: web.Request, target: Target | None, action: str = "pull"
    ) -> Decision:
        """Authenticate the caller and authorize ``action`` on ``target`` (None: ``/v2/``)."""
        if self.mode == "none":
            return await self.decide(Caller(None, ""), target, action, realm="")
        return await self.decide(self.caller(request), target, action, realm=self.realm(request))

    # --- challenges ------------------------------------------------------------------------

    def challenge_basic(self) -> str:
        return f'Basic realm={quoted(self.service)}, charset="UTF-8"'  # RFC 7617

    def challenge(self, realm: str, scope: str | None = None, error: str | None = None) -> str:
        """The ``WWW-Authenticate`` value for a 401 in the configured mode."""
        if self.mode == "basic":
            return self.challenge_basic()
        parts = [f"realm={quoted(realm)}", f"service={quoted(self.service)}"]
        if scope is not None:
            parts.append(f"scope={quoted(scope)}")
        if error is not None:
            parts.append(f"error={quoted(error)}")  # RFC 6750 §3.1
        return "Bearer " + ",".join(parts)

    # --- the decision ----------------------------------------------------------------------

    async def decide(
        self, caller: Caller, target: Target | None, action: str, *, realm: str
    ) -> Decision:
        """The decision for ``caller``; audited and counted unless ``auth: none``."""
        authentication = await self.authenticator.authenticate(caller)
        if self.mode == "none":
            return Decision(authentication.principal)
        decision, result, reason = self._decide(authentication, target, action, realm)
        principal = decision.principal
        self.metrics.client_auth.labels(self.mode, result).inc()
        log.info(
            "access_decided",
            scheme=self.mode,
            principal=clip(principal.label),
            tenant=principal.tenant,
            upstream=target.upstream if target else None,
            name=clip(target.name, 300) if target else None,
            action=action if target else None,
            result=result,
            reason=clip(reason, 256),
        )
        return decision

    def _decide(
        self, auth: Authentication, target: Target | None, action: str, realm: str
    ) -> tuple[Decision, Result, str]:
        principal = auth.principal
        if auth.failure == "limited":
            retry = {"Retry-After": str(auth.retry_after or 1)}
            limited = TooManyRequests("too many failed logins; try again later", headers=retry)
            return Decision(principal, limited), "denied", auth.reason
        if auth.failure == "busy":
            busy = LoginsBusy(auth.reason, headers={"Retry-After": str(auth.retry_after or 1)})
            return Decision(principal, busy), "denied", auth.reason
        if auth.failure == "invalid":
            error_param = "invalid_token" if self.mode == "token" else None
            message = self._invalid_message(auth.reason)
            error = self._unauthorized(realm, message, target, action, error_param)
            return Decision(principal, error), "invalid", auth.reason
        if auth.failure == "missing" and (target is None or self.mode == "token"):
            error = self._unauthorized(realm, "authentication required", target, action)
            return Decision(principal, error), "denied", auth.reason
        return self._authorize(auth, target, action, realm)

    def _invalid_message(self, reason: str) -> str:
        if self.mode == "token":
            return reason
        if reason == "malformed credentials":
            return "malformed Basic credentials"
        return "wrong user name or password"

    def _unauthorized(
        self,
        realm: str,
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
        challenge = {"WWW-Authenticate": self.challenge(realm, scope, error)}
        return Unauthorized(message, detail=detail, headers=challenge)

    def _authorize(
        self, auth: Authentication, target: Target | None, action: str, realm: str
    ) -> tuple[Decision, Result, str]:
        principal = auth.principal
        if target is None:
            return Decision(principal), "granted", "credentials accepted"
        verdict = self.policy.verdict(principal, target.upstream, target.name)
        if not verdict.permits(action):
            if principal.authenticated:
                error: RegistryError = Denied(detail={"name": target.caller_name, "action": action})
            else:
                scope_error = "insufficient_scope" if self.mode == "token" else None
                error = self._unauthorized(
                    realm, "authentication required", target, action, scope_error
                )
            return Decision(principal, error), "denied", verdict.reason
        claims = auth.claims
        if claims is not None and not claims.covers(target.caller_name, action):
            message = "the token does not cover this repository"
            error = self._unauthorized(realm, message, target, action, "insufficient_scope")
            return Decision(principal, error), "denied", "token scope lacks the name"
        return Decision(principal), "granted", verdict.reason
