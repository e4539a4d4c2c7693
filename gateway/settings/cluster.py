"""The ``cluster`` section (several replicas) and ``clients.rate_limits``.

``cluster.redis`` names the Redis that replicas coordinate through (fill leases, shared tag
revalidation, shared login and rate-limit counters); absent, every replica works alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..secret import Secret
from .reader import Reader, join_key


@dataclass(frozen=True)
class RedisSettings:
    url: str
    password: Secret | None = None
    password_file: Path | None = None
    password_vault: str | None = None  # a Vault KV path holding ``password``
    key_prefix: str = "registry-gateway:"


@dataclass(frozen=True)
class ClusterSettings:
    redis: RedisSettings | None = None
    fill_lease: float = 30.0


@dataclass(frozen=True)
class RateLimitSettings:
    """Per principal: a token bucket of ``burst`` refilled at ``requests_per_second``."""

    requests_per_second: float
    burst: int
    bytes_per_second: float | None = None


def parse_cluster(data: Any, reader: Reader) -> ClusterSettings | None:
    if data is None:
        return None
    raw = reader.mapping(data, "cluster", {"redis", "fill_lease"})
    fill_lease = reader.number(raw, "fill_lease", "cluster", 30.0, minimum=1)
    redis = None
    if raw.get("redis") is not None:
        path = "cluster.redis"
        rraw = reader.mapping(
            raw["redis"], path, {"url", "password_env", "password_file", "vault", "key_prefix"}
        )
        url = reader.string(rraw, "url", path)
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            reader.fail(join_key(path, "url"), "must be a redis:// or rediss:// URL")
            url = "redis://127.0.0.1:6379/0"
        forms = [k for k in ("password_env", "password_file", "vault") if rraw.get(k) is not None]
        if len(forms) > 1:
            reader.fail(path, f"give at most one of {', '.join(forms)}")
        vault_path = None
        if rraw.get("vault") is not None:
            vraw = reader.mapping(rraw["vault"], join_key(path, "vault"), {"path"})
            vault_path = reader.string(vraw, "path", join_key(path, "vault"))
        redis = RedisSettings(
            url=url,
            password=reader.env_secret(rraw, "password_env", path),
            password_file=reader.existing_file(rraw, "password_file", path),
            password_vault=vault_path,
            key_prefix=reader.string(rraw, "key_prefix", path, "registry-gateway:"),
        )
    return ClusterSettings(redis=redis, fill_lease=fill_lease)


def parse_rate_limits(data: Any, reader: Reader) -> RateLimitSettings | None:
    if data is None:
        return None
    path = "clients.rate_limits"
    raw = reader.mapping(data, path, {"requests_per_second", "burst", "bytes_per_second"})
    rps = reader.number(raw, "requests_per_second", path, 20.0, minimum=0.001)
    burst = reader.number(raw, "burst", path, 100, minimum=1, integer=True)
    bps = None
    if raw.get("bytes_per_second") is not None:
        bps = reader.number(raw, "bytes_per_second", path, 0.0, minimum=1)
    return RateLimitSettings(requests_per_second=rps, burst=burst, bytes_per_second=bps)
