"""The token service's use case: who asks ``/token``, for which scopes, and what they get.

handlers/token.py reads the HTTP request and renders the answer; everything between lives
here. Both flows grant requested ∩ allowed and never fail for missing rights (token.md):

- ``GET`` (token.md): optional Basic credentials, repeated ``scope``, ``service``;
- ``POST`` (oauth.md): a form with ``grant_type=password`` (``username``, ``password``) or
  ``refresh_token``; a refresh token comes back only with ``access_type=offline``.

A request is bounded before any work is done for it: at most :data:`MAX_FORM_BYTES` of form,
:data:`MAX_SCOPES` scopes of at most :data:`MAX_SCOPE_LENGTH` characters, and the issued token
must fit in one request header field (``limits.max_field_size``), or the answer is 400: one
caller must not mint a token nobody can send, nor hold the event loop while doing so.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..log import get_logger
from ..metrics import Metrics
from ..oci.authorization import parse_basic
from ..oci.scope import Scope, parse_scopes
from ..routing import Router
from .logins import LoginRefused, Logins
from .policy import ANONYMOUS, Policy, Principal
from .tokens import IssuedToken, TokenService

log = get_logger("gateway.access")

MAX_FORM_BYTES = 32 * 1024
MAX_FORM_FIELDS = 64
MAX_SCOPES = 32
# A name is at most 255 characters; with an upstream prefix, type and actions 512 is plenty.
MAX_SCOPE_LENGTH = 512
# How much of a caller-chosen value an audit line or an error message repeats.
QUOTE_LIMIT = 128
AUDIT_SCOPES = 8
_FORM_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_BEARER_PREFIX = len("Authorization: Bearer ")


class BadTokenRequest(Exception):
    """The request is malformed or over a bound: 400 (RFC 6749 §5.2 ``invalid_request``)."""

    def __init__(self, description: str, error: str = "invalid_request") -> None:
        self.description = description
        self.error = error
        super().__init__(description)


def clip(value: str, limit: int = QUOTE_LIMIT) -> str:
    """``value`` cut to ``limit`` characters, marked when cut: for logs and error messages."""
    return value if len(value) <= limit else value[:limit] + f"...({len(value)} chars)"


@dataclass(frozen=True)
class TokenForm:
    """A parsed ``POST /token`` form: the first value of each field, and every scope."""

    fields: Mapping[str, str] = field(repr=False)
    scopes: tuple[str, ...] = ()

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


def parse_token_form(body: bytes, charset: str | None) -> TokenForm:
    """An ``application/x-www-form-urlencoded`` body → TokenForm; BadTokenRequest if unusable."""
    if charset is not None and charset.lower() not in _FORM_CHARSETS:
        raise BadTokenRequest(f"unsupported charset {clip(charset)!r}; use UTF-8")
    if len(body) > MAX_FORM_BYTES:
        raise BadTokenRequest(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise BadTokenRequest("the form is not valid UTF-8") from None
    except ValueError:
        raise BadTokenRequest(f"the form has more than {MAX_FORM_FIELDS} fields") from None
    fields: dict[str, str] = {}
    scopes: list[str] = []
    for name, value in pairs:
        if name == "scope":
            scopes.append(value)
        else:
            fields.setdefault(name, value)
    return TokenForm(fields, tuple(scopes))


def requested_scopes(values: Sequence[str]) -> list[Scope]:
    """Repeated and space-separated ``scope`` values, bounded; BadTokenRequest past a bound."""
    items = [item for value in values for item in value.split(" ") if item]
    if len(items) > MAX_SCOPES:
        raise BadTokenRequest(f"at most {MAX_SCOPES} scopes per token request")
    if any(len(item) > MAX_SCOPE_LENGTH for item in items):
        raise BadTokenRequest(f"a scope is longer than {MAX_SCOPE_LENGTH} characters")
    return parse_scopes(items)


@dataclass(frozen=True)
class Granted:
    """An issued access token (and refresh token), the principal and what was granted."""

    principal: Principal
    access: IssuedToken
    scopes: list[Scope]
    refresh: IssuedToken | None = None


class TokenGrants:
    """Logs callers in and issues tokens for requested ∩ allowed scopes."""

    def __init__(
        self,
        *,
        logins: Logins,
        tokens: TokenService,
        policy: Policy,
        router: Router,
        metrics: Metrics,
        max_field_size: int,
    ) -> None:
        self.logins = logins
        self.tokens = tokens
        self.policy = policy
        self.router = router
        self.metrics = metrics
        self.service = tokens.service
        self.max_token_size = max(max_field_size - _BEARER_PREFIX, 0)

    def check_service(self, service: str | None) -> None:
        if service is not None and service != self.service:
            raise BadTokenRequest(f"unknown service {clip(service)!r}; this is {self.service!r}")

    async def for_basic(
        self, address: str, authorization: str | None, scope_values: Sequence[str]
    ) -> Granted:
        """GET: anonymous, or Basic credentials that log in; LoginRefused otherwise."""
        requested = requested_scopes(scope_values)
        credentials = parse_basic(authorization) if authorization is not None else None
        if authorization is None or (credentials is not None and credentials.empty):
            return self._issue("anonymous", None, ANONYMOUS, requested)
        try:
            if credentials is None:
                raise LoginRefused("malformed Basic credentials")
            principal = await self.logins.login(address, credentials.user, credentials.password)
        except LoginRefused as exc:
            self._audit("basic", "basic", ANONYMOUS, exc.result, exc.reason, requested)
            raise
        return self._issue("basic", "basic", principal, requested)

    async def for_form(self, address: str, form: TokenForm) -> Granted:
        """POST: the password or refresh-token grant; LoginRefused / BadTokenRequest."""
        self.check_service(form.get("service"))
        requested = requested_scopes(form.scopes)
        grant = form.get("grant_type")
        method = "token" if grant == "refresh_token" else "basic"
        refresh = None
        try:
            if grant == "password":
                user, password = form.get("username"), form.get("password")
                if not user or password is None:
                    raise BadTokenRequest("username and password are required")
                principal = await self.logins.login(address, user, password)
                if form.get("access_type") == "offline":
                    refresh = self.logins.issue_refresh(user)
            elif grant == "refresh_token":
                presented = form.get("refresh_token")
                if not presented:
                    raise BadTokenRequest("refresh_token is required")
                principal = self.logins.refresh_login(address, presented)
            else:
                reason = "grant_type must be password or refresh_token"
                raise BadTokenRequest(reason, "unsupported_grant_type")
        except LoginRefused as exc:
            self._audit(method, clip(grant or ""), ANONYMOUS, exc.result, exc.reason, requested)
            raise
        granted = self._issue(grant, method, principal, requested)
        if refresh is None:
            return granted
        return Granted(granted.principal, granted.access, granted.scopes, refresh)

    def _issue(
        self, grant: str, method: str | None, principal: Principal, requested: list[Scope]
    ) -> Granted:
        granted = self.policy.grant(principal, requested, self.router)
        issued = self.tokens.issue_access(principal.name or "", granted)
        if len(issued.token) > self.max_token_size:
            reason = "the granted scopes make a token larger than limits.max_field_size"
            self._audit(method, grant, principal, "denied", reason, requested)
            raise BadTokenRequest(reason)
        self._audit(method, grant, principal, "granted", "token issued", requested, granted)
        return Granted(principal, issued, granted)

    def _audit(
        self,
        method: str | None,
        grant: str,
        principal: Principal,
        result: str,
        reason: str,
        requested: Sequence[Scope],
        granted: Sequence[Scope] = (),
    ) -> None:
        """One line per token request; counted when credentials were presented."""
        if method is not None:
            self.metrics.client_auth.labels(method, result).inc()
        log.info(
            "token_decided",
            grant=grant,
            principal=clip(principal.label),
            tenant=principal.tenant,
            scopes=[clip(str(s)) for s in requested[:AUDIT_SCOPES]],
            scope_count=len(requested),
            granted=[clip(str(s)) for s in granted[:AUDIT_SCOPES]],
            result=result,
            reason=clip(reason, 2 * QUOTE_LIMIT),
        )
