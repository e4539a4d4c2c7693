"""The filesystem store and fills: verified publish by rename, temp sweeping, followers that
never get the last byte before the digest checked out."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.cache.filesystem import TMP, FilesystemStore
from gateway.cache.fill import Fill, FillFailed
from gateway.cache.store import ContentKey, DigestMismatch

DATA = os.urandom(300_000)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
KEY = ContentKey("registry.test", "blobs", DIGEST)


@pytest.fixture
async def store(tmp_path: Path) -> FilesystemStore:
    store = FilesystemStore(tmp_path / "cache")
    await store.start()
    return store


async def test_right_bytes_are_published_as_one_plain_file(store: FilesystemStore) -> None:
    """Bytes that hash to the digest end up at the digest's path, whole; no temp file left."""
    writer = await store.open_writer(KEY)
    await writer.write(DATA[:1000])
    await writer.write(DATA[1000:])
    entry = await writer.commit()
    writer.release()

    assert entry.size == len(DATA)
    assert store.path_for(KEY).read_bytes() == DATA
    assert list((store.root / TMP).iterdir()) == []
    assert [e.key for e in store.scan()] == [KEY]


async def test_wrong_bytes_are_never_published(store: FilesystemStore) -> None:
    """Bytes that hash elsewhere raise DigestMismatch; neither a final nor a temp file stays."""
    writer = await store.open_writer(KEY)
    await writer.write(DATA[:-1] + bytes([DATA[-1] ^ 1]))
    with pytest.raises(DigestMismatch):
        await writer.commit()
    writer.release()

    assert not store.path_for(KEY).exists()
    assert list((store.root / TMP).iterdir()) == []
    assert await store.stat(KEY) is None


async def test_sweep_removes_abandoned_temp_files_only(store: FilesystemStore) -> None:
    """Old temp files (a crash's leftovers) go; a fill's live temp file and fresh ones stay."""
    old = store.root / TMP / "leftover"
    old.write_bytes(b"partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    fresh = store.root / TMP / "fresh"
    fresh.write_bytes(b"x")
    live = await store.open_writer(KEY)
    os.utime(live.path, (time.time() - 3600, time.time() - 3600))

    assert await store.sweep(600) == 1
    assert not old.exists() and fresh.exists() and live.path.exists()
    await live.abort()
    live.release()


async def test_start_sweeps_leftovers(tmp_path: Path) -> None:
    """Temp files found at start belong to no fill of this process: they are removed."""
    (tmp_path / "cache" / TMP).mkdir(parents=True)
    (tmp_path / "cache" / TMP / "crashed").write_bytes(b"half a blob")
    store = FilesystemStore(tmp_path / "cache")
    await store.start()
    assert list((tmp_path / "cache" / TMP).iterdir()) == []


class Feed:
    """An upstream body the test releases piece by piece."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk


async def collect(fill: Fill, into: bytearray) -> None:
    async for chunk in fill.follow():
        into.extend(chunk)


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0.01)


async def noop(_fill: Fill) -> None:
    return None


@pytest.mark.parametrize("correct", [True, False])
async def test_followers_get_the_last_byte_only_after_verification(
    store: FilesystemStore, correct: bool
) -> None:
    """All bytes written but not verified: followers hold size-1; then all (right) or failure."""
    feed = Feed()
    writer = await store.open_writer(KEY)
    fill = Fill(KEY, writer, size=len(DATA), media_type=None, fill_timeout=60)
    task = asyncio.create_task(fill.run(feed.chunks(), noop))
    received = [bytearray(), bytearray()]
    followers = [asyncio.create_task(collect(fill, r)) for r in received]
    body = DATA if correct else bytes(len(DATA))
    await feed.queue.put(body[:100_000])
    await settle()
    assert all(0 < len(r) <= 100_000 for r in received)  # streamed as bytes arrive
    await feed.queue.put(body[100_000:])
    await settle()
    assert [len(r) for r in received] == [len(DATA) - 1] * 2  # the last byte held back

    await feed.queue.put(None)
    await task
    results = await asyncio.gather(*followers, return_exceptions=True)

    if correct:
        assert results == [None, None] and all(bytes(r) == DATA for r in received)
        assert store.path_for(KEY).read_bytes() == DATA
    else:
        assert all(isinstance(r, FillFailed) and r.integrity for r in results)
        assert all(len(r) < len(DATA) for r in received)
        assert not store.path_for(KEY).exists()


async def test_fill_without_followers_stops_after_fill_timeout(store: FilesystemStore) -> None:
    """Nobody follows and the upstream is slow: the fill is abandoned after fill_timeout."""
    feed = Feed()
    writer = await store.open_writer(KEY)
    fill = Fill(KEY, writer, size=len(DATA), media_type=None, fill_timeout=0.2)
    task = asyncio.create_task(fill.run(feed.chunks(), noop))
    await feed.queue.put(DATA[:10])
    await asyncio.wait_for(task, 5)
    assert fill.error is not None and "fill_timeout" in str(fill.error)
    assert not store.path_for(KEY).exists()
