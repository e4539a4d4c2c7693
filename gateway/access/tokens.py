"""The gateway's own JWTs (distribution auth/jwt.md): access tokens and refresh tokens.

Access tokens carry ``iss``, ``sub`` (``""`` for anonymous), ``aud`` (the service), ``exp``,
``nbf``, ``iat``, ``jti`` and ``access``. Verification pins everything it can: the algorithm
and ``kid`` of our own key, ``typ``, ``iss``, ``aud``, ``exp``/``nbf`` with a small leeway, and
the token's kind, so a refresh token is never taken for an access token or the reverse.
A verified access token is remembered (by a hash of its bytes) until it expires, so warm
requests pay a dictionary lookup instead of a signature check.

Refresh tokens (returned by the OAuth2 POST flow with ``access_type=offline``) are JWTs of
their own ``typ`` with no ``access``, bound to the user's current htpasswd entry by an HMAC:
changing the password or removing the user revokes every refresh token issued before.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cachetools import TLRUCache

from ..oci.scope import Scope
from .signing import SigningKey

LEEWAY = 30  # seconds of clock skew tolerated on exp and nbf
MAX_TOKEN_LENGTH = 64 * 1024
ACCESS_TYP = "JWT"  # jwt.md: typ "must be equal to JWT"
REFRESH_TYP = "refresh+jwt"  # RFC 8725 §3.11: explicit typing keeps the two kinds apart
_REQUIRED = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]


class InvalidToken(Exception):
    """A presented token is not one we accept; ``reason`` is safe to log and to show."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed token and the numbers the token response reports."""

    token: str
    expires_in: int
    issued_at: float

    @property
    def issued_at_text(self) -> str:
        """RFC 3339 UTC, as token.md's ``issued_at`` wants it."""
        return datetime.fromtimestamp(self.issued_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def __repr__(self) -> str:
        return f"IssuedToken(expires_in={self.expires_in})"


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says."""

    subject: str
    access: frozenset[tuple[str, str, str]]  # (type, name, action)
    not_before: float
    expires: float

    def covers(self, name: str, action: str) -> bool:
        granted = self.access
        return ("repository", name, action) in granted or ("repository", name, "*") in granted


@dataclass(frozen=True)
class RefreshClaims:
    subject: str
    binding: str


def _fingerprint(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenService:
    """Signs and verifies the gateway's tokens with one key."""

    def __init__(
        self,
        key: SigningKey,
        *,
        service: str,
        issuer: str,
        ttl: int,
        refresh_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.service = service
        self.issuer = issuer
        self.ttl = ttl
        self.refresh_ttl = refresh_ttl
        self._clock = clock
        self._verified: TLRUCache[bytes, AccessClaims] = TLRUCache(
            maxsize=8192, ttu=lambda _k, claims, _now: claims.expires + LEEWAY, timer=clock
        )

    # --- issuing ---------------------------------------------------------------------------

    def _sign(self, typ: str, subject: str, ttl: int, extra: Mapping[str, Any]) -> IssuedToken:
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(18),
            **extra,
        }
        token = jwt.encode(
            claims,
            self.key.private,
            algorithm=self.key.algorithm,
            headers={"kid": self.key.kid, "typ": typ},
        )
        return IssuedToken(token, ttl, now)

    def issue_access(self, subject: str, access: Iterable[Scope]) -> IssuedToken:
        """An access token for ``subject`` ("" = anonymous) holding exactly ``access``."""
        entries = [{"type": s.type, "name": s.name, "actions": list(s.actions)} for s in access]
        return self._sign(ACCESS_TYP, subject, self.ttl, {"access": entries})

    def binding(self, user: str, stored_hash: bytes) -> str:
        """Ties a refresh token to the user's current htpasswd entry (never to the password)."""
        mac = hmac.new(self.key.mac_key, user.encode() + b"\0" + stored_hash, hashlib.sha256)
        return mac.hexdigest()[:32]

    def issue_refresh(self, user: str, stored_hash: bytes) -> IssuedToken:
        return self._sign(
            REFRESH_TYP, user, self.refresh_ttl, {"bnd": self.binding(user, stored_hash)}
        )

    # --- verifying -------------------------------------------------------------------------

    def _decode(self, token: str, typ: str) -> dict[str, Any]:
        # A JWT is ASCII (RFC 7519 §7.1); anything else would fail inside PyJWT's codecs.
        if not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed token") from exc
        # SECURITY: the algorithm comes from our key, never from the token (RFC 8725 §3.1).
        if header.get("alg") != self.key.algorithm:
            raise InvalidToken(f"algorithm {header.get('alg')!r} not accepted")
        if header.get("kid") != self.key.kid:
            raise InvalidToken("unknown signing key")
        if header.get("typ") != typ:
            raise InvalidToken("wrong token type")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.public,
                algorithms=[self.key.algorithm],
                audience=self.service,
                issuer=self.issuer,
                # exp/nbf/iat are checked below against our own clock (one clock, testable).
                options={
                    "require": _REQUIRED,
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("token is for another service") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("token from another issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("bad signature") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"missing claim {exc.claim}") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed token") from exc
        if not isinstance(claims.get("sub"), str):
            raise InvalidToken("malformed token")
        for name in ("exp", "nbf", "iat"):
            if isinstance(claims[name], bool) or not isinstance(claims[name], int | float):
                raise InvalidToken(f"malformed claim {name}")
        self._check_times(max(float(claims["nbf"]), float(claims["iat"])), float(claims["exp"]))
        return claims

    def _check_times(self, not_before: float, expires: float) -> None:
        now = self._clock()
        if now > expires + LEEWAY:
            raise InvalidToken("token expired")
        if now < not_before - LEEWAY:
            raise InvalidToken("token not yet valid")

    def verify_access(self, token: str) -> AccessClaims:
        """The claims of a valid access token; InvalidToken otherwise."""
        if not token.isascii():
            raise InvalidToken("malformed token")
        fingerprint = _fingerprint(token)
        cached = self._verified.get(fingerprint)
        if cached is not None:
            self._check_times(cached.not_before, cached.expires)
            return cached
        claims = self._decode(token, ACCESS_TYP)
        access = _parse_access(claims.get("access"))
        verified = AccessClaims(claims["sub"], access, float(claims["nbf"]), float(claims["exp"]))
        self._verified[fingerprint] = verified
        return verified

    def verify_refresh(self, token: str) -> RefreshClaims:
        claims = self._decode(token, REFRESH_TYP)
        binding = claims.get("bnd")
        if not claims["sub"] or not isinstance(binding, str):
            raise InvalidToken("malformed refresh token")
        return RefreshClaims(claims["sub"], binding)


def _parse_access(value: Any) -> frozenset[tuple[str, str, str]]:
    if not isinstance(value, list):
        raise InvalidToken("malformed access claim")
    entries: set[tuple[str, str, str]] = set()
    for item in value:
        if not isinstance(item, dict):
            raise InvalidToken("malformed access claim")
        type_, name, actions = item.get("type"), item.get("name"), item.get("actions")
        if not isinstance(type_, str) or not isinstance(name, str) or not isinstance(actions, list):
            raise InvalidToken("malformed access claim")
        entries.update((type_, name, a) for a in actions if isinstance(a, str))
    return frozenset(entries)
