"""Users, keys and configs for the access tests: htpasswd files, signing keys, tokens, settings.

Everything is real: bcrypt hashes (cost 4, the minimum, to keep tests fast), PEM keys from
cryptography, JWTs from PyJWT, settings through the real parser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bcrypt
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.settings import Settings, parse_settings

SERVICE = "registry-gateway"
ISSUER = "registry-gateway"


def htpasswd_entry(user: str, password: str, rounds: int = 4) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
    return f"{user}:{hashed}\n"


def write_htpasswd(path: Path, users: Mapping[str, str]) -> Path:
    """Write-then-rename, as an operator's tooling would, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(htpasswd_entry(u, p) for u, p in users.items()))
    tmp.replace(path)
    return path


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def b64url(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(
    sub: str = "alice",
    access: list[dict[str, Any]] | None = None,
    *,
    now: float | None = None,
    ttl: int = 300,
    **overrides: Any,
) -> dict[str, Any]:
    """Access-token claims as the gateway issues them; override any of them."""
    issued = int(now if now is not None else time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "sub": sub,
        "aud": SERVICE,
        "exp": issued + ttl,
        "nbf": issued,
        "iat": issued,
        "jti": "test-jti",
        "access": access if access is not None else [],
    }
    body.update(overrides)
    return body


def pull(name: str) -> dict[str, Any]:
    return {"type": "repository", "name": name, "actions": ["pull"]}


def sign(
    body: Mapping[str, Any],
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    kid: str,
    *,
    algorithm: str = "ES256",
    typ: str = "JWT",
) -> str:
    return jwt.encode(dict(body), key, algorithm=algorithm, headers={"kid": kid, "typ": typ})


def unsigned(body: Mapping[str, Any], kid: str) -> str:
    """An ``alg: none`` token (RFC 7519 §6): header.payload. with an empty signature."""
    header = {"alg": "none", "typ": "JWT", "kid": kid}
    return f"{b64url(json.dumps(header))}.{b64url(json.dumps(dict(body)))}."


def hs256_with_public_key(body: Mapping[str, Any], public: bytes, kid: str) -> str:
    """The algorithm-confusion attack: HS256 keyed with the verifier's public key PEM."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{b64url(json.dumps(header))}.{b64url(json.dumps(dict(body)))}"
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def tamper(token: str, **changes: Any) -> str:
    """Change claims in the payload and keep the original signature."""
    header, payload, signature = token.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    body = json.loads(base64.urlsafe_b64decode(padded))
    body.update(changes)
    return f"{header}.{b64url(json.dumps(body))}.{signature}"


def make_settings(
    base_dir: Path,
    upstreams: Mapping[str, Mapping[str, Any]],
    clients: Mapping[str, Any] | None,
    *,
    default: str | None = None,
    **extra: Any,
) -> Settings:
    """Settings through the real parser, relative paths resolved against ``base_dir``."""
    data: dict[str, Any] = {
        "upstreams": {k: dict(v) for k, v in upstreams.items()},
        "routing": {"default": default},
        "clients": dict(clients) if clients is not None else None,
        **extra,
    }
    # The gateway caches by default: in the test's folder, never the machine's cache dir.
    data["cache"] = {"dir": str(base_dir / "cache"), **(data.get("cache") or {})}
    return parse_settings(data, environ={}, base_dir=base_dir, source="test")
