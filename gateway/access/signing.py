"""The token signing key: loaded from ``clients.token.key_file`` or generated at start-up.

The key type fixes the one algorithm tokens are signed and verified with (EC P-256 → ES256,
RSA → RS256): verification never takes the algorithm from the token, so ``alg: none`` and
HS256-signed-with-the-public-key tokens are refused by construction. ``kid`` is the RFC 7638
JWK thumbprint of the public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_RSA_BITS = 2048

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class SigningKeyError(ValueError):
    """The key file holds no usable key; the message says why."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def jwk_thumbprint(key: PublicKey) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, no whitespace; base64url."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        members = {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64url(numbers.x.to_bytes(size, "big")),
            "y": _b64url(numbers.y.to_bytes(size, "big")),
        }
    else:
        rsa_numbers = key.public_numbers()
        members = {
            "e": _b64url(_int_bytes(rsa_numbers.e)),
            "kty": "RSA",
            "n": _b64url(_int_bytes(rsa_numbers.n)),
        }
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return _b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True, repr=False)
class SigningKey:
    """A private key with its pinned algorithm, ``kid`` and a derived MAC key."""

    private: PrivateKey
    algorithm: Literal["ES256", "RS256"]
    kid: str
    generated: bool = False
    public: PublicKey = field(init=False)
    # For refresh-token bindings: derived from the private key, so replicas sharing the key
    # file agree on it, and it never equals anything that is published.
    mac_key: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "public", self.private.public_key())
        der = self.private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        info = b"registry-gateway refresh-token binding"
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
        object.__setattr__(self, "mac_key", hkdf.derive(der))

    def __repr__(self) -> str:
        return f"SigningKey({self.algorithm}, kid={self.kid!r})"


def _from_private(private: object, *, generated: bool = False) -> SigningKey:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if not isinstance(private.curve, ec.SECP256R1):
            raise SigningKeyError(f"EC key on curve {private.curve.name}; use P-256 (prime256v1)")
        return SigningKey(private, "ES256", jwk_thumbprint(private.public_key()), generated)
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < MIN_RSA_BITS:
            raise SigningKeyError(
                f"RSA key of {private.key_size} bits; use at least {MIN_RSA_BITS}"
            )
        return SigningKey(private, "RS256", jwk_thumbprint(private.public_key()), generated)
    raise SigningKeyError(f"{type(private).__name__} keys are not supported; use EC P-256 or RSA")


def load_signing_key(pem: bytes) -> SigningKey:
    """Parse an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1)."""
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:
        raise SigningKeyError("the key is encrypted; give an unencrypted PEM key") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError("not a PEM private key") from exc
    return _from_private(private)


def generate_signing_key() -> SigningKey:
    """A fresh EC P-256 key: tokens die with the process (single replica only)."""
    return _from_private(ec.generate_private_key(ec.SECP256R1()), generated=True)
