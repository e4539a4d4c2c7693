"""Upload ids: an upstream upload location sealed to the caller that started it.

The id is ``base64url(version ‖ nonce ‖ AES-GCM(key, nonce, claims))``. The claims name the
principal, tenant, upstream, repository (as the upstream knows it), the upstream location
(path and query under the upstream's URL) and an expiry. Opening checks all of them against
the request at hand, so a leaked id is useless to anyone else, and altering one byte fails
authentication. The key comes from ``clients.token.key_file`` when set (every replica derives
the same one) or is generated at start-up (ids then die with the process).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import BlobUploadUnknown

_VERSION = b"\x01"
_NONCE = 12
_INFO = b"registry-gateway upload sessions v1"
# An id past this length is no id of ours; don't spend a decryption on it.
MAX_ID_LENGTH = 4096


@dataclass(frozen=True)
class UploadSession:
    """Whose upload it is, where it lives upstream, and until when the id is valid."""

    principal: str | None
    tenant: str | None
    upstream: str
    name: str
    location: str  # path and query, relative to the upstream's URL
    expires: float

    def owned_by(self, principal: str | None, tenant: str | None, upstream: str, name: str) -> bool:
        return (self.principal, self.tenant, self.upstream, self.name) == (
            principal,
            tenant,
            upstream,
            name,
        )


def derive_key(material: bytes) -> bytes:
    """A 256-bit AES key from the token signing key's bytes (HKDF-SHA256, own ``info``)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(material)


class SessionSealer:
    """Seals and opens upload ids; ``clock`` is wall time (ids cross replicas)."""

    def __init__(
        self, key: bytes | None, ttl: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._aead = AESGCM(key if key is not None else AESGCM.generate_key(bit_length=256))
        self.ttl = ttl
        self._clock = clock

    def start(
        self, principal: str | None, tenant: str | None, upstream: str, name: str, location: str
    ) -> UploadSession:
        """A new session, valid for ``ttl`` seconds from now."""
        return UploadSession(principal, tenant, upstream, name, location, self._clock() + self.ttl)

    def seal(self, session: UploadSession) -> str:
        claims = json.dumps(
            [session.principal, session.tenant, session.upstream, session.name,
             session.location, round(session.expires)],
            separators=(",", ":"),
        ).encode()  # fmt: skip
        nonce = os.urandom(_NONCE)
        sealed = _VERSION + nonce + self._aead.encrypt(nonce, claims, _VERSION)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(
        self, upload_id: str, *, principal: str | None, tenant: str | None, upstream: str, name: str
    ) -> UploadSession:
        """The session behind ``upload_id`` if it is this caller's and still valid.

        Every failure is the same BLOB_UPLOAD_UNKNOWN: the caller learns nothing about why.
        """
        session = self._decrypt(upload_id)
        if session is None or not session.owned_by(principal, tenant, upstream, name):
            raise BlobUploadUnknown(detail={"upload": "unknown, expired or not yours"})
        if session.expires <= self._clock():
            raise BlobUploadUnknown(detail={"upload": "unknown, expired or not yours"})
        return session

    def _decrypt(self, upload_id: str) -> UploadSession | None:
        if not upload_id or len(upload_id) > MAX_ID_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(upload_id + "=" * (-len(upload_id) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= 1 + _NONCE or raw[:1] != _VERSION:
            return None
        try:
            claims = json.loads(
                self._aead.decrypt(raw[1 : 1 + _NONCE], raw[1 + _NONCE :], _VERSION)
            )
            principal, tenant, upstream, name, location, expires = claims
        except (InvalidTag, ValueError, TypeError):
            return None
        return UploadSession(principal, tenant, upstream, name, location, float(expires))
