"""The one credential store the app uses: each upstream's spec picks its source."""

from __future__ import annotations

from collections.abc import Mapping

from ..settings import UpstreamSettings, VaultCredentialsSpec
from .base import CredentialsError, CredentialStore, UpstreamCredentials
from .static import StaticCredentialStore


class UpstreamCredentialStore:
    """Dispatches to the static store or to the Vault store (when one is configured)."""

    def __init__(
        self,
        upstreams: Mapping[str, UpstreamSettings],
        vault: CredentialStore | None = None,
    ) -> None:
        self._upstreams = upstreams
        self._static = StaticCredentialStore(upstreams)
        self._vault = vault

    def _source(self, upstream: str) -> CredentialStore | None:
        spec = self._upstreams[upstream].credentials
        if spec is None:
            return None
        if isinstance(spec, VaultCredentialsSpec):
            if self._vault is None:
                raise CredentialsError(f"upstream {upstream} needs Vault, which is not configured")
            return self._vault
        return self._static

    async def get(self, upstream: str, tenant: str | None) -> UpstreamCredentials | None:
        source = self._source(upstream)
        return None if source is None else await source.get(upstream, tenant)

    async def rejected(self, upstream: str, tenant: str | None) -> bool:
        source = self._source(upstream)
        return False if source is None else await source.rejected(upstream, tenant)
