"""The store protocol: what a place that keeps content-addressed bytes must offer.

The filesystem store implements it today; an object store (S3) implements the same interface.
Content is addressed by :class:`ContentKey` (namespace, kind, digest). A writer hashes what it
is given and publishes only bytes that hash to the key's digest: a reader of the store never
sees a partial or wrong object. Repository links record which repository a digest was seen in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Kind = Literal["blobs", "manifests"]


@dataclass(frozen=True, order=True)
class ContentKey:
    namespace: str  # the upstream key, plus "/tenants/<tenant>" for per-tenant credentials
    kind: Kind
    digest: str


@dataclass(frozen=True)
class Entry:
    key: ContentKey
    size: int
    accessed: float  # seconds since the epoch of the last use


class DigestMismatch(Exception):
    """The bytes written do not hash to the digest they were stored under."""


class StoreUnusable(OSError):
    """The store cannot take new content (unwritable, disk full)."""


class Writer(Protocol):
    """A not yet published object: bytes go in, hashed on the way, readable while growing."""

    @property
    def written(self) -> int: ...

    async def write(self, data: bytes) -> None: ...

    async def read_at(self, offset: int, size: int) -> bytes:
        """Bytes already written, for callers following the fill."""
        ...

    async def commit(self) -> Entry:
        """Flush, compare with the digest, publish atomically; DigestMismatch discards."""
        ...

    # Optional (a fill looks it up with getattr): ``async def verify(self) -> None`` compares
    # what was written with the digest, raising DigestMismatch, and may publish the object
    # before ``commit`` makes it durable (crash-safe: see the filesystem store). A writer that
    # has it lets followers receive the last byte without waiting for the flush.

    async def abort(self) -> None: ...

    def release(self) -> None:
        """The last follower is done: free the handle (after commit or abort)."""
        ...


class Store(Protocol):
    async def start(self) -> list[Entry]:
        """Prepare the store, sweep leftovers of a crash, list what is stored."""
        ...

    async def open_writer(self, key: ContentKey) -> Writer: ...

    async def stat(self, key: ContentKey) -> Entry | None: ...

    def local_path(self, key: ContentKey) -> Path | None:
        """A file the kernel can send (sendfile), or None for remote stores."""
        ...

    async def read(self, key: ContentKey) -> bytes:
        """A small object (a manifest) whole."""
        ...

    async def touch(self, key: ContentKey) -> None: ...

    async def delete(self, key: ContentKey) -> int:
        """Remove an object; returns the bytes freed (0 when it was already gone)."""
        ...

    async def link(self, namespace: str, name: str, digest: str) -> None:
        """Record that ``digest`` belongs to repository ``name``."""
        ...

    async def linked(self, namespace: str, name: str, digest: str) -> bool: ...

    async def sweep(self, older_than: float) -> int:
        """Remove temporary objects untouched for ``older_than`` seconds; returns how many."""
        ...

    def problem(self) -> str | None:
        """Why the store cannot take content now, or None."""
        ...

    async def check(self) -> None:
        """Refresh what ``problem`` reports (writability, free space)."""
        ...

    def has_room(self, size: int) -> bool: ...

    def note_used(self, size: int) -> None:
        """``size`` bytes are about to be written: count them against the free space."""
        ...
