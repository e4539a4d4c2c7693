"""The S3 store on a real SeaweedFS: multipart fills, verify before publish, followers."""

from __future__ import annotations

import hashlib
import os

import pytest

from gateway.cache.s3 import PART_SIZE, RETAINED_PARTS, S3Access, S3Store
from gateway.cache.store import ContentKey, DigestMismatch
from gateway.secret import Secret
from tests.components.seaweedfs import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFS


def store_for(seaweedfs: SeaweedFS, prefix: str) -> S3Store:
    access = S3Access(
        seaweedfs.endpoint, "us-east-1", BUCKET, prefix, Secret(ACCESS_KEY), Secret(SECRET_KEY)
    )
    return S3Store(access)


async def test_wrong_bytes_abort_the_upload_and_publish_nothing(
    seaweedfs: SeaweedFS, prefix: str
) -> None:
    """Three parts of bytes that do not hash to the key: DigestMismatch, no object, no
    multipart upload left behind."""
    store = store_for(seaweedfs, prefix)
    try:
        await store.start()
        key = ContentKey("up", "blobs", "sha256:" + "0" * 64)
        writer = await store.open_writer(key)
        for _ in range(3):
            await writer.write(os.urandom(PART_SIZE))
        with pytest.raises(DigestMismatch):
            await writer.commit()
        writer.release()
        assert await store.stat(key) is None
        assert seaweedfs.keys(prefix=prefix) == {}
        assert seaweedfs.uploads_in_progress() == 0
    finally:
        await store.close()


async def test_a_follower_behind_the_retained_parts_reads_the_published_object(
    seaweedfs: SeaweedFS, prefix: str
) -> None:
    """Memory keeps only the last parts; an older offset is answered from the bucket once the
    object is published, and the published object is the exact bytes."""
    store = store_for(seaweedfs, prefix)
    try:
        await store.start()
        data = os.urandom(PART_SIZE * (RETAINED_PARTS + 2) + 12345)
        key = ContentKey("up", "blobs", "sha256:" + hashlib.sha256(data).hexdigest())
        writer = await store.open_writer(key)
        await writer.write(data)
        assert await writer.read_at(len(data) - 10, 10) == data[-10:]  # still in memory
        entry = await writer.commit()
        assert await writer.read_at(5, 100) == data[5:105]  # from the bucket now
        writer.release()
        assert entry.size == len(data)
        assert await store.read_range(key, 0, len(data)) == data
        assert (await store.stat(key)) is not None
        assert seaweedfs.uploads_in_progress() == 0
    finally:
        await store.close()


async def test_a_second_publish_of_the_same_digest_keeps_one_object(
    seaweedfs: SeaweedFS, prefix: str
) -> None:
    """Two writers (as two replicas without Redis) publish one digest: both succeed, one
    object remains, no upload is left open."""
    store = store_for(seaweedfs, prefix)
    try:
        await store.start()
        data = os.urandom(PART_SIZE + 1000)
        key = ContentKey("up", "blobs", "sha256:" + hashlib.sha256(data).hexdigest())
        first, second = await store.open_writer(key), await store.open_writer(key)
        await first.write(data)
        await second.write(data)
        assert (await first.commit()).size == len(data)
        assert (await second.commit()).size == len(data)
        assert [k for k in seaweedfs.keys(prefix=prefix) if "/blobs/" in k] == [
            store.object_key(key)
        ]
        assert seaweedfs.uploads_in_progress() == 0
    finally:
        await store.close()
