"""``/token``: the gateway's own token service (distribution auth/token.md and auth/oauth.md).

``GET`` takes optional Basic credentials, repeated ``scope`` and ``service``, and ignores
``account``, ``client_id`` and ``offline_token``. ``POST`` is the OAuth2 form flow containerd
uses first (``grant_type=password`` or ``refresh_token``); it returns a refresh token only with
``access_type=offline``. Both grant requested ∩ allowed and never fail for missing rights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from ..access.gatekeeper import Gatekeeper, LoginRefused, is_empty, parse_basic
from ..access.policy import ANONYMOUS, Principal
from ..access.tokens import IssuedToken
from ..errors import RegistryError, TooManyRequests, Unauthorized
from ..keys import ACCESS_KEY, PRINCIPAL, TENANT
from ..log import get_logger
from ..oci.scope import Scope, parse_scopes

log = get_logger("gateway.access")

FORM_TYPE = "application/x-www-form-urlencoded"
# RFC 6749 §5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class InvalidRequest(RegistryError):
    code, status, default_message = "UNSUPPORTED", 400, "invalid token request"


def _audit(
    gate: Gatekeeper,
    request: web.Request,
    method: str | None,
    grant: str,
    principal: Principal,
    result: str,
    reason: str,
    requested: Sequence[Scope],
    granted: Sequence[Scope] = (),
) -> None:
    """One line per token request; counted when credentials were presented."""
    request[PRINCIPAL] = principal.name
    request[TENANT] = principal.tenant
    if method is not None:
        gate.metrics.client_auth.labels(method, result).inc()
    log.info(
        "token_decided",
        grant=grant,
        principal=principal.label,
        tenant=principal.tenant,
        scopes=[str(s) for s in requested],
        granted=[str(s) for s in granted],
        result=result,
        reason=reason,
    )


def _check_service(gate: Gatekeeper, service: str | None) -> None:
    if service is not None and service != gate.service:
        raise InvalidRequest(f"unknown service {service!r}; this is {gate.service!r}")


def _body(issued: IssuedToken) -> dict[str, Any]:
    # token.md: both names, equal; expires_in ≥ 60 (settings enforce ttl ≥ 60).
    return {
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at_text,
    }


async def get_token(request: web.Request) -> web.Response:
    """token.md "Requesting a Token": Basic or anonymous."""
    gate = request.app[ACCESS_KEY]
    assert gate.tokens is not None
    _check_service(gate, request.query.get("service"))
    requested = parse_scopes(request.query.getall("scope", []))
    header = request.headers.get("Authorization")
    if header is not None and is_empty(parse_basic(header)):
        header = None  # empty Basic credentials mean "no credentials"
    principal, grant = ANONYMOUS, "anonymous"
    if header is not None:
        grant = "basic"
        try:
            principal = await _basic_login(gate, request, header)
        except LoginRefused as exc:
            _audit(gate, request, "basic", grant, ANONYMOUS, _refused(exc), exc.reason, requested)
            if exc.retry_after is not None:
                retry = {"Retry-After": str(exc.retry_after)}
                raise TooManyRequests(exc.reason, headers=retry) from None
            challenge = {"WWW-Authenticate": gate.challenge_basic()}
            raise Unauthorized(exc.reason, headers=challenge) from None
    granted = gate.policy.grant(principal, requested, gate.router)
    issued = gate.tokens.issue_access(principal.name or "", granted)
    method = "basic" if header is not None else None
    _audit(gate, request, method, grant, principal, "granted", "token issued", requested, granted)
    return web.json_response(_body(issued), headers=NO_STORE)


async def _basic_login(gate: Gatekeeper, request: web.Request, header: str) -> Principal:
    pair = parse_basic(header)
    if pair is None:
        raise LoginRefused("malformed Basic credentials")
    return await gate.login(gate.address(request), *pair)


def _refused(exc: LoginRefused) -> str:
    return "denied" if exc.retry_after is not None else "invalid"


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    """RFC 6749 §5.2 error body."""
    body = {"error": error, "error_description": description}
    return web.json_response(body, status=status, headers=NO_STORE)


async def post_token(request: web.Request) -> web.Response:
    """oauth.md: ``grant_type=password`` (username, password) or ``refresh_token``."""
    gate = request.app[ACCESS_KEY]
    assert gate.tokens is not None
    if request.content_type != FORM_TYPE:
        return _oauth_error(400, "invalid_request", f"the body must be {FORM_TYPE}")
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    service = fields.get("service")
    if service is not None and service != gate.service:
        return _oauth_error(400, "invalid_request", f"unknown service {service!r}")
    requested = parse_scopes([v for v in form.getall("scope", []) if isinstance(v, str)])
    grant = fields.get("grant_type")
    address = gate.address(request)
    refresh: IssuedToken | None = None
    method = "token" if grant == "refresh_token" else "basic"
    try:
        if grant == "password":
            user, password = fields.get("username"), fields.get("password")
            if not user or password is None:
                return _oauth_error(400, "invalid_request", "username and password are required")
            principal = await gate.login(address, user, password)
            if fields.get("access_type") == "offline":
                refresh = gate.issue_refresh(user)
        elif grant == "refresh_token":
            presented = fields.get("refresh_token")
            if not presented:
                return _oauth_error(400, "invalid_request", "refresh_token is required")
            principal = gate.refresh_login(address, presented)
        else:
            reason = "grant_type must be password or refresh_token"
            return _oauth_error(400, "unsupported_grant_type", reason)
    except LoginRefused as exc:
        _audit(gate, request, method, grant or "", ANONYMOUS, _refused(exc), exc.reason, requested)
        if exc.retry_after is not None:
            retry = {"Retry-After": str(exc.retry_after)}
            raise TooManyRequests(exc.reason, headers=retry) from None
        # RFC 6749 §5.2: a wrong password or a bad refresh token is invalid_grant.
        return _oauth_error(400, "invalid_grant", exc.reason)
    granted = gate.policy.grant(principal, requested, gate.router)
    issued = gate.tokens.issue_access(principal.name or "", granted)
    _audit(gate, request, method, grant, principal, "granted", "token issued", requested, granted)
    body = _body(issued)
    body["scope"] = " ".join(str(s) for s in granted)  # oauth.md: the scope granted
    if refresh is not None:
        body["refresh_token"] = refresh.token
    return web.json_response(body, headers=NO_STORE)
