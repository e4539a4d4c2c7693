"""Upload ids are bound to their caller: nobody else continues them, nothing outlives them.

Against a real registry: bob (same tenant and rights as alice) continuing alice's upload id,
an altered id, alice's id on another repository and an expired id are all 404
``BLOB_UPLOAD_UNKNOWN``, and alice's upload completes with exactly her bytes. A second
gateway with the same key file continues it (replicas share sessions); one without cannot.
A caller hanging up mid-body commits nothing upstream.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

from tests.access.identities import ec_key, pem
from tests.components import client as registry_client
from tests.components.registry import Registry
from tests.push.conftest import (
    PUSH,
    Client,
    errors_of,
    pusher,
    random_bytes,
    sha256,
    unique,
)

OCTETS = {"Content-Type": "application/octet-stream"}


async def begin(gateway: Client, auth: dict[str, str], name: str, first: bytes) -> str:
    """Start an upload and send ``first``; the upload's Location."""
    started = await gateway.post(f"/v2/{PUSH}/{name}/blobs/uploads/", headers=auth)
    assert started.status == 202
    patched = await gateway.patch(
        started.headers["Location"], data=first, headers={**auth, **OCTETS}
    )
    assert patched.status == 202
    return patched.headers["Location"]


async def assert_unknown(response: Any) -> None:
    assert response.status == 404
    assert await errors_of(response) == ["BLOB_UPLOAD_UNKNOWN"]


def tampered(location: str) -> str:
    path, upload_id = location.rsplit("/", 1)
    middle = len(upload_id) // 2
    flipped = "A" if upload_id[middle] != "A" else "B"
    return f"{path}/{upload_id[:middle]}{flipped}{upload_id[middle + 1 :]}"


async def test_nobody_else_continues_an_upload_and_its_owner_finishes_it(
    gateway: Client, registry_open: Registry
) -> None:
    """bob, a tampered id and alice's id on another repository get 404 BLOB_UPLOAD_UNKNOWN;
    alice then finishes with her bytes only."""
    name = unique()
    alice = await pusher(gateway, "alice", name)
    first, rest = random_bytes(70_000), random_bytes(30_000)
    location = await begin(gateway, alice, name, first)

    bob = await pusher(gateway, "bob", name)
    await assert_unknown(await gateway.patch(location, data=b"bob's", headers={**bob, **OCTETS}))
    await assert_unknown(await gateway.get(location, headers=bob))
    await assert_unknown(await gateway.put(f"{location}?digest={sha256(b'x')}", headers=bob))
    await assert_unknown(await gateway.delete(location, headers=bob))
    await assert_unknown(await gateway.patch(tampered(location), data=b"x", headers=alice))
    other = unique()
    moved = location.replace(f"/{name}/", f"/{other}/")
    await assert_unknown(await gateway.get(moved, headers=await pusher(gateway, "alice", other)))

    status = await gateway.get(location, headers=alice)
    assert status.status == 204 and status.headers["Range"] == f"0-{len(first) - 1}"
    digest = sha256(first + rest)
    done = await gateway.put(f"{location}?digest={digest}", data=rest, headers={**alice, **OCTETS})
    assert done.status == 201
    blob = registry_client.get_blob(registry_open, name, digest)
    assert blob.status == 200 and blob.body == first + rest


async def test_an_expired_upload_id_is_unknown(
    start_gateway: Callable[..., Awaitable[Client]],
) -> None:
    """limits.upload_session_ttl: past it, the owner's own id is 404 BLOB_UPLOAD_UNKNOWN."""
    gateway = await start_gateway(upload_session_ttl=1)
    name = unique()
    alice = await pusher(gateway, "alice", name)
    location = await begin(gateway, alice, name, b"early bytes")
    await asyncio.sleep(2.0)
    await assert_unknown(await gateway.get(location, headers=alice))
    await assert_unknown(await gateway.patch(location, data=b"late", headers={**alice, **OCTETS}))


async def test_a_replica_with_the_same_key_continues_and_one_without_cannot(
    start_gateway: Callable[..., Awaitable[Client]], registry_open: Registry, tmp_path: Any
) -> None:
    """Stateless sessions: a second gateway sharing clients.token.key_file finishes alice's
    upload; the id means nothing to a gateway with another key."""
    first_replica = await start_gateway()
    second_replica = await start_gateway()
    name = unique()
    data = random_bytes(40_000)
    alice = await pusher(first_replica, "alice", name)
    location = await begin(first_replica, alice, name, data)
    done = await second_replica.put(f"{location}?digest={sha256(data)}", headers=alice)
    assert done.status == 201
    assert registry_client.get_blob(registry_open, name, sha256(data)).body == data

    (tmp_path / "signing.pem").write_bytes(pem(ec_key()))  # the next gateway's key differs
    stranger = await start_gateway()
    name = unique()
    alice = await pusher(first_replica, "alice", name)
    location = await begin(first_replica, alice, name, b"bytes")
    stranger_alice = await pusher(stranger, "alice", name)
    await assert_unknown(await stranger.get(location, headers=stranger_alice))


async def hang_up_mid_body(gateway: Client, path: str, auth: dict[str, str], size: int) -> None:
    """Send the head of a ``size``-byte PUT/POST and a third of its body, then close."""
    _reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    method = "POST" if path.endswith("uploads/") or "uploads/?" in path else "PUT"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {gateway.host}:{gateway.port}\r\n"
        f"Authorization: {auth['Authorization']}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\n\r\n"
    )
    writer.write(head.encode() + random_bytes(size // 3))
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()
    await asyncio.sleep(0.5)


async def test_a_caller_hanging_up_mid_body_commits_nothing(
    gateway: Client, registry_open: Registry
) -> None:
    """A monolithic POST and a closing PUT cut off mid-body leave no blob upstream, and the
    upload can still be finished afterwards."""
    name = unique()
    alice = await pusher(gateway, "alice", name)
    data = random_bytes(3_000_000)
    digest = sha256(data)
    await hang_up_mid_body(gateway, f"/v2/{PUSH}/{name}/blobs/uploads/?digest={digest}", alice,
                           len(data))  # fmt: skip
    assert registry_client.get_blob(registry_open, name, digest).status == 404

    started = await gateway.post(f"/v2/{PUSH}/{name}/blobs/uploads/", headers=alice)
    location = started.headers["Location"]
    await hang_up_mid_body(gateway, f"{location}?digest={digest}", alice, len(data))
    assert registry_client.get_blob(registry_open, name, digest).status == 404

    retried = await gateway.post(
        f"/v2/{PUSH}/{name}/blobs/uploads/?digest={digest}",
        data=io.BytesIO(data),
        headers={**alice, **OCTETS},
    )
    assert retried.status == 201
    assert registry_client.get_blob(registry_open, name, digest).body == data
