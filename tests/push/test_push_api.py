"""The push API through the gateway, request by request, against a real docker-registry.

Status codes, ``Location``, ``Range``, ``Docker-Upload-UUID`` and ``Docker-Content-Digest``
as distribution-spec end-4a/4b/5/6/7/9/10/11/13/14 say; who may do it (push/delete actions,
``push: true`` upstreams only); bounded manifests.
"""

from __future__ import annotations

import json
from typing import Any

from tests.components import client as registry_client
from tests.components.registry import Registry
from tests.push.conftest import (
    PUSH,
    READ_ONLY,
    Client,
    bearer,
    errors_of,
    pusher,
    random_bytes,
    sha256,
    unique,
)

OCTETS = {"Content-Type": "application/octet-stream"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = b"{}"


def upstream_has_blob(registry: Registry, name: str, digest: str) -> bool:
    return registry_client.get_blob(registry, name, digest).status == 200


async def start_upload(gateway: Client, auth: dict[str, str], name: str) -> str:
    response = await gateway.post(f"/v2/{PUSH}/{name}/blobs/uploads/", headers=auth)
    assert response.status == 202, await response.text()
    return response.headers["Location"]


async def push_blob(gateway: Client, auth: dict[str, str], name: str, data: bytes) -> str:
    """A monolithic push (end-4b); the blob's digest."""
    digest = sha256(data)
    response = await gateway.post(
        f"/v2/{PUSH}/{name}/blobs/uploads/?digest={digest}", data=data, headers={**auth, **OCTETS}
    )
    assert response.status == 201, await response.text()
    return digest


def manifest_for(config: str, layer: str, layer_size: int, **extra: Any) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config, "size": len(EMPTY_CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer, "size": layer_size}],
        **extra,
    }).encode()  # fmt: skip


async def test_chunked_upload_reports_progress_and_commits_on_the_digest(
    gateway: Client, registry_open: Registry
) -> None:
    """POST 202 → PATCH with Content-Range 202 + Range → GET 204 + Range → PATCH → PUT ?digest=
    201 with the blob's Location and digest; no upstream address ever reaches the caller."""
    name = unique()
    auth = await pusher(gateway, "alice", name)
    data = random_bytes(300_000)
    location = await start_upload(gateway, auth, name)
    assert location.startswith(f"/v2/{PUSH}/{name}/blobs/uploads/")
    first, second = data[:100_000], data[100_000:]
    response = await gateway.patch(
        location, data=first, headers={**auth, **OCTETS, "Content-Range": f"0-{len(first) - 1}"}
    )
    assert response.status == 202
    assert response.headers["Range"] == f"0-{len(first) - 1}"
    location = response.headers["Location"]
    assert location.rsplit("/", 1)[1] == response.headers["Docker-Upload-UUID"]
    status = await gateway.get(location, headers=auth)
    assert status.status == 204 and status.headers["Range"] == f"0-{len(first) - 1}"
    response = await gateway.patch(
        location, data=second,
        headers={**auth, **OCTETS, "Content-Range": f"{len(first)}-{len(data) - 1}"},
    )  # fmt: skip
    assert response.status == 202 and response.headers["Range"] == f"0-{len(data) - 1}"
    digest = sha256(data)
    done = await gateway.put(f"{response.headers['Location']}?digest={digest}", headers=auth)
    assert done.status == 201
    assert done.headers["Docker-Content-Digest"] == digest
    assert done.headers["Location"] == f"/v2/{PUSH}/{name}/blobs/{digest}"
    for answer in (response, status, done):
        for value in answer.headers.values():
            assert str(registry_open.port) not in value and "_state" not in value
    pulled = await gateway.get(f"/v2/{PUSH}/{name}/blobs/{digest}", headers=auth)
    assert await pulled.read() == data


async def test_a_streamed_patch_and_a_put_with_the_last_bytes_commit_the_blob(
    gateway: Client, registry_open: Registry
) -> None:
    """A PATCH with a chunked body and no range, then PUT ?digest= carrying the rest."""
    name = unique()
    auth = await pusher(gateway, "alice", name)
    data = random_bytes(2_000_000)

    async def chunks() -> Any:
        for i in range(0, 1_500_000, 100_000):
            yield data[i : i + 100_000]

    location = await start_upload(gateway, auth, name)
    response = await gateway.patch(location, data=chunks(), headers={**auth, **OCTETS})
    assert response.status == 202 and response.headers["Range"] == "0-1499999"
    digest = sha256(data)
    done = await gateway.put(
        f"{response.headers['Location']}?digest={digest}", data=data[1_500_000:],
        headers={**auth, **OCTETS},
    )  # fmt: skip
    assert done.status == 201 and done.headers["Docker-Content-Digest"] == digest
    assert upstream_has_blob(registry_open, f"{name}", digest)


async def test_a_monolithic_post_commits_the_blob_at_once(
    gateway: Client, registry_open: Registry
) -> None:
    """end-4b: POST ?digest= with the body answers 201 and the upstream holds the blob."""
    name = unique()
    auth = await pusher(gateway, "alice", name)
    data = random_bytes(50_000)
    digest = await push_blob(gateway, auth, name, data)
    assert upstream_has_blob(registry_open, name, digest)


async def test_a_wrong_digest_commits_nothing(gateway: Client, registry_open: Registry) -> None:
    """end-6: bytes that do not hash to ?digest= are 400 DIGEST_INVALID and no blob exists."""
    name = unique()
    auth = await pusher(gateway, "alice", name)
    claimed = sha256(b"something else")
    response = await gateway.post(
        f"/v2/{PUSH}/{name}/blobs/uploads/?digest={claimed}", data=b"payload",
        headers={**auth, **OCTETS},
    )  # fmt: skip
    assert response.status == 400 and "DIGEST_INVALID" in await errors_of(response)
    assert not upstream_has_blob(registry_open, name, claimed)
    assert not upstream_has_blob(registry_open, name, sha256(b"payload"))


async def test_a_put_without_a_valid_digest_is_digest_invalid(gateway: Client) -> None:
    """end-6 needs ?digest=: missing or malformed is 400 DIGEST_INVALID from the gateway."""
    name = unique()
    auth = await pusher(gateway, "alice", name)
    location = await start_upload(gateway, auth, name)
    for query in ("", "?digest=sha256:xyz"):
        response = await gateway.put(f"{location}{query}", headers=auth)
        assert response.status == 400 and await errors_of(response) == ["DIGEST_INVALID"]


async def test_mount_from_a_readable_repository_and_fallback_to_a_session(
    gateway: Client, registry_open: Registry
) -> None:
    """end-11: a mount from a repository the caller may pull is 201; one the upstream declines
    is an upload session (202); from a repository the caller may not read (team-b) the gateway
    does not even ask, and the caller gets an upload session too."""
    source, name = unique(), unique()
    auth = await bearer(
        gateway, "alice", f"repository:{PUSH}/{source}:pull,push",
        f"repository:{PUSH}/{name}:pull,push",
    )  # fmt: skip
    digest = await push_blob(gateway, auth, source, random_bytes(10_000))
    mounted = await gateway.post(
        f"/v2/{PUSH}/{name}/blobs/uploads/?mount={digest}&from={PUSH}/{source}", headers=auth
    )
    assert mounted.status == 201
    assert mounted.headers["Location"] == f"/v2/{PUSH}/{name}/blobs/{digest}"
    assert upstream_has_blob(registry_open, name, digest)
    # The upstream declines a mount of a blob the source does not hold: an upload session.
    absent = sha256(b"never pushed " + name.encode())
    declined_upstream = await gateway.post(
        f"/v2/{PUSH}/{name}/blobs/uploads/?mount={absent}&from={PUSH}/{source}", headers=auth
    )
    assert declined_upstream.status == 202
    assert declined_upstream.headers["Location"].startswith(f"/v2/{PUSH}/{name}/blobs/uploads/")

    foreign = "team-b/secret-" + name.rsplit("/", 1)[1]
    secret = random_bytes(1000)
    registry_client.upload_blob(registry_open, foreign, [secret])
    other = unique()
    auth = await pusher(gateway, "alice", other)
    declined = await gateway.post(
        f"/v2/{PUSH}/{other}/blobs/uploads/?mount={sha256(secret)}&from={PUSH}/{foreign}",
        headers=auth,
    )
    assert declined.status == 202 and "Docker-Upload-UUID" in declined.headers
    assert not upstream_has_blob(registry_open, other, sha256(secret))


async def test_cancel_ends_the_upload(gateway: Client) -> None:
    """end-14: DELETE on the upload is 204; its id then leads to 404 BLOB_UPLOAD_UNKNOWN."""
    name = unique()
    auth = await pusher(gateway, "alice", name)
    location = await start_upload(gateway, auth, name)
    cancelled = await gateway.delete(location, headers=auth)
    assert cancelled.status == 204
    status = await gateway.get(location, headers=auth)
    assert status.status == 404 and await errors_of(status) == ["BLOB_UPLOAD_UNKNOWN"]


async def test_manifest_push_by_tag_and_by_digest_then_delete(
    gateway: Client, registry_open: Registry
) -> None:
    """end-7 by tag and by digest (201, Location by digest, Docker-Content-Digest), end-9 and
    end-10 deletes (202) by a caller with the delete action; deleted content is not served
    from the cache afterwards."""
    name = unique("team-d")
    auth = await pusher(gateway, "dave", name, "pull,push,delete")
    layer = random_bytes(2000)
    config_digest = await push_blob(gateway, auth, name, EMPTY_CONFIG)
    layer_digest = await push_blob(gateway, auth, name, layer)
    body = manifest_for(config_digest, layer_digest, len(layer))
    digest = sha256(body)
    headers = {**auth, "Content-Type": OCI_MANIFEST}
    by_tag = await gateway.put(f"/v2/{PUSH}/{name}/manifests/v1", data=body, headers=headers)
    assert by_tag.status == 201, await by_tag.text()
    assert by_tag.headers["Docker-Content-Digest"] == digest
    assert by_tag.headers["Location"] == f"/v2/{PUSH}/{name}/manifests/{digest}"
    by_digest = await gateway.put(
        f"/v2/{PUSH}/{name}/manifests/{digest}", data=body, headers=headers
    )
    assert by_digest.status == 201
    pulled = await gateway.get(
        f"/v2/{PUSH}/{name}/manifests/v1", headers={**auth, "Accept": OCI_MANIFEST}
    )
    assert await pulled.read() == body
    cached = await gateway.get(f"/v2/{PUSH}/{name}/blobs/{layer_digest}", headers=auth)
    assert await cached.read() == layer  # now in the cache too

    deleted = await gateway.delete(f"/v2/{PUSH}/{name}/manifests/{digest}", headers=auth)
    assert deleted.status == 202
    gone = await gateway.get(f"/v2/{PUSH}/{name}/manifests/{digest}", headers=auth)
    assert gone.status == 404
    blob_deleted = await gateway.delete(f"/v2/{PUSH}/{name}/blobs/{layer_digest}", headers=auth)
    assert blob_deleted.status == 202
    assert not upstream_has_blob(registry_open, name, layer_digest)
    blob_gone = await gateway.get(f"/v2/{PUSH}/{name}/blobs/{layer_digest}", headers=auth)
    assert blob_gone.status == 404


async def test_a_manifest_past_the_limit_is_413(start_gateway: Any) -> None:
    """limits.max_manifest_size: a larger manifest is 413 SIZE_INVALID, declared or streamed."""
    gateway = await start_gateway(max_manifest_size="2KiB")
    name = unique()
    auth = await pusher(gateway, "alice", name)
    big = b"{" + b" " * 4096 + b"}"
    headers = {**auth, "Content-Type": OCI_MANIFEST}
    declared = await gateway.put(f"/v2/{PUSH}/{name}/manifests/v1", data=big, headers=headers)
    assert declared.status == 413 and await errors_of(declared) == ["SIZE_INVALID"]

    async def streamed() -> Any:
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    chunked = await gateway.put(f"/v2/{PUSH}/{name}/manifests/v1", data=streamed(), headers=headers)
    assert chunked.status == 413 and await errors_of(chunked) == ["SIZE_INVALID"]


async def test_a_pull_only_caller_is_denied_every_write(gateway: Client) -> None:
    """carol may pull push.test/* only: POST uploads, manifest PUT and DELETE are 403 DENIED."""
    name = unique()
    auth = await pusher(gateway, "carol", name, "pull,push,delete")
    digest = sha256(b"x")
    for method, path in (
        ("POST", f"/v2/{PUSH}/{name}/blobs/uploads/"),
        ("PUT", f"/v2/{PUSH}/{name}/manifests/v1"),
        ("DELETE", f"/v2/{PUSH}/{name}/manifests/{digest}"),
        ("DELETE", f"/v2/{PUSH}/{name}/blobs/{digest}"),
    ):
        response = await gateway.request(method, path, headers=auth, data=b"{}")
        assert response.status == 403, (method, path)
        assert await errors_of(response) == ["DENIED"]


async def test_push_without_the_delete_action_cannot_delete(gateway: Client) -> None:
    """alice may push team-a/* but not delete: DELETE of a manifest is 403 DENIED."""
    name = unique()
    auth = await pusher(gateway, "alice", name, "pull,push,delete")
    response = await gateway.delete(f"/v2/{PUSH}/{name}/manifests/{sha256(b'm')}", headers=auth)
    assert response.status == 403 and await errors_of(response) == ["DENIED"]


async def test_an_anonymous_push_is_challenged_for_the_push_scope(gateway: Client) -> None:
    """No token: 401 UNAUTHORIZED with a Bearer challenge whose scope asks for push."""
    name = unique()
    response = await gateway.post(f"/v2/{PUSH}/{name}/blobs/uploads/")
    assert response.status == 401 and await errors_of(response) == ["UNAUTHORIZED"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'scope="repository:{PUSH}/{name}:push"' in challenge


async def test_a_pull_token_does_not_cover_a_push(gateway: Client) -> None:
    """alice holding a pull-only token is challenged again (insufficient_scope) for push."""
    name = unique()
    auth = await pusher(gateway, "alice", name, "pull")
    response = await gateway.post(f"/v2/{PUSH}/{name}/blobs/uploads/", headers=auth)
    assert response.status == 401
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


async def test_an_upstream_without_push_answers_405(gateway: Client) -> None:
    """ro.test has no push: true: every write is 405 UNSUPPORTED, even for alice."""
    name = unique()
    auth = await bearer(gateway, "alice", f"repository:{READ_ONLY}/{name}:pull,push")
    for method, path in (
        ("POST", f"/v2/{READ_ONLY}/{name}/blobs/uploads/"),
        ("PUT", f"/v2/{READ_ONLY}/{name}/manifests/v1"),
        ("DELETE", f"/v2/{READ_ONLY}/{name}/blobs/{sha256(b'x')}"),
    ):
        response = await gateway.request(method, path, headers=auth, data=b"{}")
        assert response.status == 405, (method, path)
        assert await errors_of(response) == ["UNSUPPORTED"]


async def test_bad_input_on_writes_is_an_oci_error(gateway: Client) -> None:
    """A bad digest, mount digest, reference or name is a 4xx envelope, never a 500."""
    name = unique()
    auth = await pusher(gateway, "alice", name)
    cases = [
        ("POST", f"/v2/{PUSH}/{name}/blobs/uploads/?digest=sha256:nothex", "DIGEST_INVALID"),
        ("POST", f"/v2/{PUSH}/{name}/blobs/uploads/?mount=md5:1&from=x", "DIGEST_INVALID"),
        ("PUT", f"/v2/{PUSH}/{name}/manifests/bad%20tag", "TAG_INVALID"),
        ("POST", f"/v2/{PUSH}/Team-A/X/blobs/uploads/", "NAME_INVALID"),
        ("PATCH", f"/v2/{PUSH}/{name}/blobs/uploads/not-an-id", "BLOB_UPLOAD_UNKNOWN"),
        ("HEAD", f"/v2/{PUSH}/{name}/blobs/uploads/x", None),
    ]
    for method, path, code in cases:
        response = await gateway.request(method, path, headers=auth, data=b"")
        assert 400 <= response.status < 500, (method, path, response.status)
        if code is not None:
            assert await errors_of(response) == [code], path


async def test_uploaded_bytes_are_counted_per_upstream(gateway: Client) -> None:
    """registry_gateway_upload_bytes_total{upstream="push.test"} grows by the body bytes."""

    async def uploaded() -> float:
        text = await (await gateway.get("/metrics")).text()
        prefix = f'registry_gateway_upload_bytes_total{{upstream="{PUSH}"}} '
        return next((float(line[len(prefix) :]) for line in text.splitlines()
                     if line.startswith(prefix)), 0.0)  # fmt: skip

    before = await uploaded()
    name = unique()
    await push_blob(gateway, await pusher(gateway, "alice", name), name, random_bytes(123_456))
    assert await uploaded() - before == 123_456


async def test_a_tag_pushed_through_the_gateway_is_pulled_at_once(gateway: Client) -> None:
    """A cached tag (tag_ttl 60 s) pushed anew through the gateway: the next pull sees the new
    manifest, not the cached one."""
    name = unique("team-a")
    auth = await pusher(gateway, "alice", name)
    config_digest = await push_blob(gateway, auth, name, EMPTY_CONFIG)
    headers = {**auth, "Content-Type": OCI_MANIFEST}
    pulled = []
    for size in (1000, 2000):
        layer = random_bytes(size)
        body = manifest_for(config_digest, await push_blob(gateway, auth, name, layer), size)
        put = await gateway.put(f"/v2/{PUSH}/{name}/manifests/v1", data=body, headers=headers)
        assert put.status == 201, await put.text()
        for _ in range(2):  # the second pull of the same push is answered from the cache
            got = await gateway.get(
                f"/v2/{PUSH}/{name}/manifests/v1", headers={**auth, "Accept": OCI_MANIFEST}
            )
            assert got.status == 200
            pulled.append((await got.read() == body, got.headers.get("X-Cache")))
    assert pulled == [(True, "MISS"), (True, "HIT"), (True, "MISS"), (True, "HIT")]
