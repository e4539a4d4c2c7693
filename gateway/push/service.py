"""The push service: the session sealer, the manifest size limit and the write hooks.

Built once by ``create_app`` and kept under ``PUSH_KEY``. ``manifest_hooks`` is where a cache
listens for pushed and deleted manifests (so the next pull of a pushed tag sees it at once);
a hook that fails is logged and never fails the push, which the upstream already accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..log import get_logger
from ..settings import Settings
from .sessions import SessionSealer, derive_key

log = get_logger("gateway.push")


@dataclass(frozen=True)
class ManifestWritten:
    """A manifest the upstream accepted (PUT) or removed (DELETE) through the gateway."""

    upstream: str
    tenant: str | None
    name: str  # as the upstream knows it
    reference: str  # the tag or digest the caller used
    digest: str | None  # Docker-Content-Digest of the upstream's answer, when it sent one
    deleted: bool = False


ManifestHook = Callable[[ManifestWritten], Awaitable[None]]


@dataclass(frozen=True)
class BlobDeleted:
    """A blob the upstream removed (DELETE) through the gateway."""

    upstream: str
    tenant: str | None
    name: str
    digest: str


BlobHook = Callable[[BlobDeleted], Awaitable[None]]


class PushService:
    """What the push handlers share across requests."""

    def __init__(self, sealer: SessionSealer, *, max_manifest_size: int) -> None:
        self.sealer = sealer
        self.max_manifest_size = max_manifest_size
        self.manifest_hooks: list[ManifestHook] = []
        self.blob_hooks: list[BlobHook] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> PushService:
        """Upload ids keyed from ``clients.token.key_file`` (shared by replicas) or at random."""
        key_file = settings.clients.token.key_file
        key = derive_key(key_file.read_bytes()) if key_file is not None else None
        if key is None and any(u.push for u in settings.upstreams.values()):
            note = "upload ids die with this process; run one replica or set key_file"
            log.warning("upload_key_generated", note=note)
        sealer = SessionSealer(key, settings.limits.upload_session_ttl)
        return cls(sealer, max_manifest_size=settings.limits.max_manifest_size)

    async def manifest_written(self, event: ManifestWritten) -> None:
        for hook in self.manifest_hooks:
            try:
                await hook(event)
            except Exception:
                log.exception("manifest_hook_failed", upstream=event.upstream, name=event.name)

    async def blob_deleted(self, event: BlobDeleted) -> None:
        for hook in self.blob_hooks:
            try:
                await hook(event)
            except Exception:
                log.exception("blob_hook_failed", upstream=event.upstream, name=event.name)
