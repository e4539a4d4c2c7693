"""The ``cache`` section: where content-addressed blobs and manifests live, how big, how fresh.

The embedded default caches (``enabled: true``) under ``/var/cache/registry-gateway`` when
running as root, else ``$XDG_CACHE_HOME/registry-gateway`` (``~/.cache`` when unset).
Sizes take a plain byte count or a binary unit (``KiB``, ``MiB``, ``GiB``, ``TiB``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .reader import Reader, join_key

ROOT_CACHE_DIR = Path("/var/cache/registry-gateway")
_UNITS = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


@dataclass(frozen=True)
class S3StoreSettings:
    """``cache.s3``: parsed and kept for the S3 store; the filesystem store ignores it."""

    endpoint: str | None = None
    region: str = "us-east-1"
    bucket: str = "registry-gateway"
    prefix: str = ""
    credentials: Mapping[str, Any] | None = None
    redirect: bool = False
    redirect_ttl: float = 300.0


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = True
    store: Literal["filesystem", "s3"] = "filesystem"
    dir: Path = ROOT_CACHE_DIR
    max_size: int = 20 << 30
    tag_ttl: float = 60.0
    max_stale: float = 86400.0
    negative_ttl: float = 10.0
    fill_timeout: float = 3600.0
    s3: S3StoreSettings = field(default_factory=S3StoreSettings)


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """Root: the system cache folder; anyone else: their XDG cache folder."""
    if os.geteuid() == 0:
        return ROOT_CACHE_DIR
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")) / ".cache")
    return Path(base).expanduser() / "registry-gateway"


def parse_size(value: Any) -> int | None:
    """``1048576``, ``512MiB``, ``20GiB`` → bytes; None when it is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _SIZE.match(value)
    if not match or match.group(2).upper() not in _UNITS:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


_KEYS = {
    "enabled", "store", "dir", "max_size", "tag_ttl", "max_stale", "negative_ttl",
    "fill_timeout", "s3",
}  # fmt: skip
_S3_KEYS = {
    "endpoint", "region", "bucket", "prefix", "credentials", "redirect", "redirect_ttl",
}  # fmt: skip


def parse_cache(data: Any, reader: Reader) -> CacheSettings:
    raw = reader.mapping(data, "cache", _KEYS)
    enabled = reader.boolean(raw, "enabled", "cache", True)
    store = reader.choice(raw, "store", "cache", ("filesystem", "s3"), "filesystem")
    directory = reader.path_value(raw, "dir", "cache") or default_cache_dir(reader.environ)
    max_size = parse_size(raw.get("max_size", 20 << 30))
    if max_size is None or max_size < 1 << 20:
        reader.fail("cache.max_size", "must be a size of at least 1MiB (bytes, or e.g. 20GiB)")
        max_size = 20 << 30
    s3raw = reader.mapping(raw.get("s3"), "cache.s3", _S3_KEYS)
    s3 = S3StoreSettings(
        endpoint=reader.string(s3raw, "endpoint", "cache.s3"),
        region=reader.string(s3raw, "region", "cache.s3", "us-east-1"),
        bucket=reader.string(s3raw, "bucket", "cache.s3", "registry-gateway"),
        prefix=reader.string(s3raw, "prefix", "cache.s3", ""),
        credentials=s3raw.get("credentials"),
        redirect=reader.boolean(s3raw, "redirect", "cache.s3", False),
        redirect_ttl=reader.number(s3raw, "redirect_ttl", "cache.s3", 300.0, minimum=1),
    )
    if s3.credentials is not None and not isinstance(s3.credentials, dict):
        reader.fail(join_key("cache.s3", "credentials"), "must be a mapping")
    if s3.credentials:
        _check_s3_credentials(s3.credentials, reader)
    return CacheSettings(
        enabled=enabled,
        store=store,
        dir=directory,
        max_size=max_size,
        tag_ttl=reader.number(raw, "tag_ttl", "cache", 60.0),
        max_stale=reader.number(raw, "max_stale", "cache", 86400.0),
        negative_ttl=reader.number(raw, "negative_ttl", "cache", 10.0),
        fill_timeout=reader.number(raw, "fill_timeout", "cache", 3600.0, minimum=1),
        s3=s3,
    )


def _check_s3_credentials(creds: Mapping[str, Any], reader: Reader) -> None:
    """``{access_key_id_env, secret_access_key_env}`` (both set) or ``{vault: {path}}``."""
    path = "cache.s3.credentials"
    if isinstance(creds.get("vault"), dict):
        vault = creds["vault"]
        if (
            not isinstance(vault.get("path"), str)
            or set(creds) != {"vault"}
            or (set(vault) - {"path", "mount"})
        ):
            reader.fail(join_key(path, "vault"), "must be {path, mount?} and the only form")
        return
    if set(creds) != {"access_key_id_env", "secret_access_key_env"}:
        reader.fail(path, "must be {access_key_id_env, secret_access_key_env} or {vault: {path}}")
        return
    for name in ("access_key_id_env", "secret_access_key_env"):
        reader.env_secret(creds, name, path)
