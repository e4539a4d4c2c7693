"""Several gateway replicas sharing a real SeaweedFS bucket and a real Redis.

Each test gets its own bucket prefix and Redis key prefix, so tests sharing the module's
SeaweedFS never see each other's objects.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.components.redis import Redis
from tests.components.registry import Registry
from tests.components.seaweedfs import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFS
from tests.gateway_process import GatewayProcess

S3_ENV = {"TEST_S3_KEY_ID": ACCESS_KEY, "TEST_S3_SECRET": SECRET_KEY}


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A SeaweedFS (master, volume, filer, S3) with the bucket the gateways use."""
    with SeaweedFS.start(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    """A Redis of this test's own (tests stop and restart it)."""
    with Redis.start(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Registry]:
    """An open docker-registry of this test's own, whose log counts the gateway's GETs."""
    with Registry.start(tmp_path / "registry") as registry:
        yield registry


def replica_config(
    registry: Registry,
    s3: SeaweedFS,
    prefix: str,
    redis: Redis | None = None,
    *,
    s3_extra: Mapping[str, Any] | None = None,
    cluster_extra: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "upstreams": {"up": {"url": registry.url}},
        "routing": {"default": "up"},
        "cache": {
            "store": "s3",
            "s3": {
                "endpoint": s3.endpoint,
                "bucket": BUCKET,
                "prefix": prefix,
                "credentials": {
                    "access_key_id_env": "TEST_S3_KEY_ID",
                    "secret_access_key_env": "TEST_S3_SECRET",
                },
                **(s3_extra or {}),
            },
        },
    }
    if redis is not None:
        config["cluster"] = {
            "redis": {"url": redis.url, "key_prefix": f"{prefix}:"},
            "fill_lease": 6,
            **(cluster_extra or {}),
        }
    config.update(extra)
    return config


@pytest.fixture
def prefix() -> str:
    return f"t{secrets.token_hex(4)}/"


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Callable[[int, dict[str, Any]], list[GatewayProcess]]]:
    """`replicas(n, config)` starts n gateway processes with one config; stopped after."""
    started: list[GatewayProcess] = []

    def start(count: int, config: dict[str, Any]) -> list[GatewayProcess]:
        batch = []
        for _ in range(count):
            gateway = GatewayProcess.start(tmp_path / f"replica-{len(started)}", config, env=S3_ENV)
            started.append(gateway)
            batch.append(gateway)
        return batch

    yield start
    for gateway in started:
        gateway.stop()


def upstream_gets(registry: Registry, digest: str) -> int:
    """How many GETs of this blob the upstream registry answered (its own request log)."""
    pattern = re.compile(rf"http\.request\.method=GET .*blobs/{re.escape(digest)}\"")
    text = registry.log_path.read_text(errors="replace")
    lines = text.splitlines()
    return sum(1 for line in lines if "response completed" in line and pattern.search(line))


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample over series matching ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
