"""Credentials from the config file: literal/env values, files re-read on change, Docker config."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Mapping
from pathlib import Path

from ..secret import Secret
from ..settings import (
    BasicCredentialsSpec,
    CredentialsSpec,
    DockerConfigCredentialsSpec,
    SecretSource,
    TokenCredentialsSpec,
    UpstreamSettings,
    normalize_registry,
)
from .base import CredentialsError, UpstreamCredentials


class _FileCache:
    """Reads small secret files, re-reading only when their mtime or size changes."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[tuple[int, int], str]] = {}

    def read(self, path: Path) -> str:
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            cached = self._seen.get(path)
            if cached and cached[0] == stamp:
                return cached[1]
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialsError(f"cannot read credentials file {path}: {exc.strerror}") from exc
        self._seen[path] = (stamp, text)
        return text


def docker_config_entry(
    config: Mapping[str, object], upstream: UpstreamSettings
) -> UpstreamCredentials | None:
    """The ``auths`` entry for this upstream: by key, by URL host, or Docker Hub's legacy key."""
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    wanted = {upstream.key, upstream.host, normalize_registry(upstream.host)}
    if upstream.key == "docker.io":
        wanted.add("https://index.docker.io/v1/")
    for key, entry in auths.items():
        host = str(key)
        for prefix in ("https://", "http://"):
            if host.startswith(prefix):
                host = host[len(prefix) :]
        host = host.split("/", 1)[0]
        if (key in wanted or normalize_registry(host) in wanted) and isinstance(entry, dict):
            return _entry_credentials(entry)
    return None


def _entry_credentials(entry: Mapping[str, object]) -> UpstreamCredentials | None:
    username, password = entry.get("username"), entry.get("password")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            username, _, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
    if isinstance(username, str) and isinstance(password, str) and username:
        return UpstreamCredentials(username=username, password=Secret(password))
    return None


class StaticCredentialStore:
    """Credentials written in the config (or in files it names); no tenancy."""

    def __init__(self, upstreams: Mapping[str, UpstreamSettings]) -> None:
        self._upstreams = upstreams
        self._files = _FileCache()

    def handles(self, spec: CredentialsSpec | None) -> bool:
        return isinstance(
            spec, BasicCredentialsSpec | TokenCredentialsSpec | DockerConfigCredentialsSpec
        )

    def _secret(self, source: SecretSource) -> Secret:
        if source.value is not None:
            return source.value
        assert source.file is not None
        return Secret(self._files.read(source.file))

    def _load(self, upstream: UpstreamSettings) -> UpstreamCredentials | None:
        spec = upstream.credentials
        if isinstance(spec, BasicCredentialsSpec):
            return UpstreamCredentials(username=spec.username, password=self._secret(spec.password))
        if isinstance(spec, TokenCredentialsSpec):
            return UpstreamCredentials(token=self._secret(spec.token))
        if isinstance(spec, DockerConfigCredentialsSpec):
            text = self._files.read(spec.path)
            try:
                config = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CredentialsError(f"{spec.path} is not valid JSON") from exc
            found = docker_config_entry(config, upstream) if isinstance(config, dict) else None
            if found is None:
                raise CredentialsError(f"{spec.path} has no usable auths entry for {upstream.key}")
            return found
        return None

    async def get(self, upstream: str, tenant: str | None) -> UpstreamCredentials | None:
        settings = self._upstreams[upstream]
        if not _reads_files(settings.credentials):
            return self._load(settings)
        # Reading a file is quick but still I/O: keep it off the event loop.
        return await asyncio.to_thread(self._load, settings)

    async def rejected(self, upstream: str, tenant: str | None) -> bool:
        # A file may have been rotated since we read it; the mtime check picks that up.
        return _reads_files(self._upstreams[upstream].credentials)


def _reads_files(spec: CredentialsSpec | None) -> bool:
    if isinstance(spec, DockerConfigCredentialsSpec):
        return True
    if isinstance(spec, BasicCredentialsSpec):
        return spec.password.file is not None
    if isinstance(spec, TokenCredentialsSpec):
        return spec.token.file is not None
    return False
