"""The credential value handed to the upstream client, and the store protocol."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Protocol

from ..secret import Secret


@dataclass(frozen=True, repr=False)
class UpstreamCredentials:
    """Basic (username + password) or a static bearer token for one upstream."""

    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    source: str = "static"

    @property
    def identity(self) -> str:
        """A short, non-reversible id: token caches are keyed by it, logs may show it."""
        material = "\0".join(
            [
                self.username or "",
                self.password.reveal() if self.password else "",
                self.token.reveal() if self.token else "",
            ]
        )
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    @property
    def is_basic(self) -> bool:
        return self.username is not None and self.password is not None

    def basic_header(self) -> str | None:
        if not self.is_basic:
            return None
        assert self.username is not None and self.password is not None
        raw = f"{self.username}:{self.password.reveal()}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def bearer_header(self) -> str | None:
        return f"Bearer {self.token.reveal()}" if self.token else None

    def __repr__(self) -> str:
        kind = "token" if self.token else "basic"
        return f"UpstreamCredentials({kind}, user={self.username!r}, id={self.identity})"


class CredentialsError(Exception):
    """Credentials exist in config but cannot be produced (file missing, secret malformed)."""

    def __init__(self, message: str, *, status: int = 502) -> None:
        self.status = status
        super().__init__(message)


class CredentialStore(Protocol):
    """Gives the credentials for an upstream (and tenant), and forgets them on rejection."""

    async def get(self, upstream: str, tenant: str | None) -> UpstreamCredentials | None: ...

    async def rejected(self, upstream: str, tenant: str | None) -> bool:
        """The upstream rejected what ``get`` gave; return True if a fresh read may differ."""
        ...
