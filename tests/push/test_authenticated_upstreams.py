"""Streamed writes to upstreams that want credentials (htpasswd Basic, token Bearer).

A streamed body can go upstream only once, so it must never meet the upstream's 401. A replica
that has never talked to the upstream receives the middle of someone's upload (a PATCH with a
streamed body): it has to authenticate first, and the bytes must arrive exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from tests.access.identities import make_settings
from tests.components import client as registry_client
from tests.components.registry import Registry
from tests.push.conftest import PUSH, Client, clients_section, pusher, random_bytes, sha256, unique

OCTETS = {"Content-Type": "application/octet-stream"}


def replica(auth_dir: Path, registry: Registry, **extra: Any) -> web.Application:
    assert registry.credentials is not None
    user, password = registry.credentials
    upstream = {"url": registry.url, "push": True,
                "credentials": {"username": user, "password": password}}  # fmt: skip
    return create_app(make_settings(auth_dir, {PUSH: upstream}, clients_section(), **extra))


@pytest.mark.parametrize("registry_fixture", ["registry_htpasswd", "registry_token"])
async def test_a_cold_replica_continues_an_upload_with_a_streamed_body(
    registry_fixture: str,
    request: pytest.FixtureRequest,
    aiohttp_client: Callable[..., Awaitable[Client]],
    auth_dir: Path,
) -> None:
    """Replica 1 starts the upload; replica 2, which never saw the upstream's challenge,
    streams a PATCH and the closing PUT's body: the upstream holds exactly the bytes sent."""
    registry: Registry = request.getfixturevalue(registry_fixture)
    first = await aiohttp_client(replica(auth_dir, registry))
    second = await aiohttp_client(replica(auth_dir, registry))
    name = unique()
    auth = await pusher(first, "alice", name)
    started = await first.post(f"/v2/{PUSH}/{name}/blobs/uploads/", headers=auth)
    assert started.status == 202
    data = random_bytes(1_200_000)

    async def chunks() -> Any:
        for i in range(0, 1_000_000, 250_000):
            yield data[i : i + 250_000]

    patched = await second.patch(started.headers["Location"], data=chunks(),
                                 headers={**auth, **OCTETS})  # fmt: skip
    assert patched.status == 202, await patched.text()
    assert patched.headers["Range"] == "0-999999"

    async def rest() -> Any:
        yield data[1_000_000:]

    cold = await aiohttp_client(replica(auth_dir, registry))
    done = await cold.put(f"{patched.headers['Location']}?digest={sha256(data)}", data=rest(),
                          headers={**auth, **OCTETS})  # fmt: skip
    assert done.status == 201, await done.text()
    stored = registry_client.get_blob(registry, name, sha256(data))
    assert stored.status == 200 and stored.body == data


async def test_a_caller_silent_mid_body_is_dropped_after_the_read_timeout(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    auth_dir: Path,
    registry_open: Registry,
) -> None:
    """A PATCH whose body stalls past timeouts.read has its connection dropped and the
    upstream request abandoned: no blob is committed from the partial bytes."""
    settings = make_settings(
        auth_dir, {PUSH: {"url": registry_open.url, "push": True}}, clients_section(),
        timeouts={"connect": 5, "read": 1},
    )  # fmt: skip
    gateway = await aiohttp_client(create_app(settings))
    name = unique()
    auth = await pusher(gateway, "alice", name)
    started = await gateway.post(f"/v2/{PUSH}/{name}/blobs/uploads/", headers=auth)

    async def stalls() -> Any:
        yield b"x" * 1000
        await asyncio.sleep(3)
        yield b"y" * 1000

    with pytest.raises(Exception):  # noqa: B017 - the gateway drops the connection
        await gateway.patch(started.headers["Location"], data=stalls(), headers={**auth, **OCTETS})
    for partial in (b"x" * 1000, b"x" * 1000 + b"y" * 1000):
        assert registry_client.get_blob(registry_open, name, sha256(partial)).status == 404
    fresh = await gateway.post(f"/v2/{PUSH}/{name}/blobs/uploads/", headers=auth)
    assert fresh.status == 202  # the gateway itself carries on
