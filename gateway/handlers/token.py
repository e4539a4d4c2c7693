"""``/token``: the HTTP side of the gateway's own token service (access/grants.py decides).

``GET`` errors are the OCI envelope (401 with a ``Basic`` challenge, 429, 400); ``POST``
errors are RFC 6749 §5.2 JSON (``invalid_request``, ``invalid_grant``,
``unsupported_grant_type``), except 429 and 503 which carry ``Retry-After``.

The form is read with a bound on its size and on the time it may take: a caller announcing
more than ``MAX_FORM_BYTES`` is answered at once without reading a byte of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..access.gatekeeper import Gatekeeper, LoginsBusy
from ..access.grants import (
    MAX_FORM_BYTES,
    BadTokenRequest,
    Granted,
    TokenGrants,
    parse_token_form,
)
from ..access.logins import LoginRefused
from ..errors import RegistryError, TooManyRequests, Unauthorized
from ..keys import ACCESS_KEY, PRINCIPAL, TENANT

FORM_TYPE = "application/x-www-form-urlencoded"
# RFC 6749 §5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# How long a caller may take to send a form of at most MAX_FORM_BYTES.
FORM_TIMEOUT = 10.0


class InvalidRequest(RegistryError):
    code, status, default_message = "UNSUPPORTED", 400, "invalid token request"


class FormTooLarge(Exception):
    """The body went past MAX_FORM_BYTES."""


def _grants(request: web.Request) -> tuple[Gatekeeper, TokenGrants]:
    gate = request.app[ACCESS_KEY]
    assert gate.grants is not None, "/token is routed only with auth: token"
    return gate, gate.grants


def _body(granted: Granted) -> dict[str, Any]:
    # token.md: both names, equal; expires_in ≥ 60 (settings enforce ttl ≥ 60).
    issued = granted.access
    return {
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at_text,
    }


def _record(request: web.Request, granted: Granted) -> None:
    request[PRINCIPAL] = granted.principal.name
    request[TENANT] = granted.principal.tenant


def _limited(exc: LoginRefused) -> RegistryError:
    """429 for an address over its failed-login limit, 503 when the bcrypt queue is full."""
    retry = {"Retry-After": str(exc.retry_after or 1)}
    if exc.kind == "busy":
        return LoginsBusy(exc.reason, headers=retry)
    return TooManyRequests(exc.reason, headers=retry)


async def get_token(request: web.Request) -> web.Response:
    """token.md "Requesting a Token": Basic or anonymous."""
    gate, grants = _grants(request)
    try:
        grants.check_service(request.query.get("service"))
        granted = await grants.for_basic(
            gate.address(request),
            request.headers.get("Authorization"),
            request.query.getall("scope", []),
        )
    except BadTokenRequest as exc:
        raise InvalidRequest(exc.description) from None
    except LoginRefused as exc:
        if exc.kind != "invalid":
            raise _limited(exc) from None
        challenge = {"WWW-Authenticate": gate.challenge_basic()}
        raise Unauthorized(exc.reason, headers=challenge) from None
    _record(request, granted)
    return web.json_response(_body(granted), headers=NO_STORE)


def _oauth_error(status: int, error: str, description: str, *, close: bool = False) -> web.Response:
    """RFC 6749 §5.2 error body; ``close`` when the body was left unread."""
    body = {"error": error, "error_description": description}
    response = web.json_response(body, status=status, headers=NO_STORE)
    if close:
        response.force_close()
    return response


async def read_form(request: web.Request, limit: int = MAX_FORM_BYTES) -> bytes:
    """The body, at most ``limit`` bytes; FormTooLarge past it, TimeoutError when too slow."""
    if request.content_length is not None and request.content_length > limit:
        raise FormTooLarge
    body = bytearray()
    async with asyncio.timeout(FORM_TIMEOUT):
        while chunk := await request.content.read(limit + 1 - len(body)):
            body += chunk
            if len(body) > limit:
                raise FormTooLarge
    return bytes(body)


async def post_token(request: web.Request) -> web.Response:
    """oauth.md: ``grant_type=password`` (username, password) or ``refresh_token``."""
    gate, grants = _grants(request)
    if request.content_type != FORM_TYPE:
        return _oauth_error(400, "invalid_request", f"the body must be {FORM_TYPE}")
    try:
        body = await read_form(request)
    except FormTooLarge:
        reason = f"the form is over {MAX_FORM_BYTES} bytes"
        return _oauth_error(400, "invalid_request", reason, close=True)
    except TimeoutError:
        return _oauth_error(400, "invalid_request", "the form did not arrive in time", close=True)
    try:
        form = parse_token_form(body, request.charset)
        granted = await grants.for_form(gate.address(request), form)
    except BadTokenRequest as exc:
        return _oauth_error(400, exc.error, exc.description)
    except LoginRefused as exc:
        if exc.kind != "invalid":
            raise _limited(exc) from None
        # RFC 6749 §5.2: a wrong password or a bad refresh token is invalid_grant.
        return _oauth_error(400, "invalid_grant", exc.reason)
    _record(request, granted)
    body_json = _body(granted)
    body_json["scope"] = " ".join(str(s) for s in granted.scopes)  # oauth.md: the scope granted
    if granted.refresh is not None:
        body_json["refresh_token"] = granted.refresh.token
    return web.json_response(body_json, headers=NO_STORE)
