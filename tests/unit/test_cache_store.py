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


async def test_verify_publishes_before_fsync_and_a_crash_withdraws_it(tmp_path: Path) -> None:
    """verify() renames the checked file into place with a durable marker; commit() drops the
    marker. A marker left by a crash makes the next start remove the file it names."""
    store = FilesystemStore(tmp_path / "cache")
    await store.start()
    writer = await store.open_writer(KEY)
    await writer.write(DATA)
    await writer.verify()
    assert store.path_for(KEY).read_bytes() == DATA  # published: readable at once
    assert [p.name.endswith(".unsynced") for p in (store.root / TMP).iterdir()] == [True]
    assert await store.sweep(0) == 0  # a live fill's marker is not swept
    # The process dies here (no commit): a new store on the same directory withdraws it.
    after_crash = FilesystemStore(tmp_path / "cache")
    await after_crash.start()
    assert not after_crash.path_for(KEY).exists()
    assert list((store.root / TMP).iterdir()) == []
    writer.release()

    again = await store.open_writer(KEY)
    await again.write(DATA)
    await again.verify()
    entry = await again.commit()
    again.release()
    assert entry.size == len(DATA) and store.path_for(KEY).read_bytes() == DATA
    assert list((store.root / TMP).iterdir()) == []


async def test_verify_refuses_wrong_bytes_and_publishes_nothing(store: FilesystemStore) -> None:
    writer = await store.open_writer(KEY)
    await writer.write(bytes(len(DATA)))
    with pytest.raises(DigestMismatch):
        await writer.verify()
    await writer.abort()
    writer.release()
    assert not store.path_for(KEY).exists()
    assert list((store.root / TMP).iterdir()) == []


async def test_late_follower_reads_what_left_the_memory_window_from_the_file(
    store: FilesystemStore,
) -> None:
    """A large blob in small chunks: an early and a late follower both get every byte; the
    fill keeps only a bounded window in memory and the file holds the rest."""
    big = os.urandom(12 << 20)
    key = ContentKey("registry.test", "blobs", "sha256:" + hashlib.sha256(big).hexdigest())
    feed = Feed()
    writer = await store.open_writer(key)
    fill = Fill(key, writer, size=len(big), media_type=None, fill_timeout=60)
    task = asyncio.create_task(fill.run(feed.chunks(), noop))
    early = bytearray()
    first = asyncio.create_task(collect(fill, early))
    for i in range(0, len(big) - 4096, 64 << 10):
        await feed.queue.put(big[i : min(i + (64 << 10), len(big) - 4096)])
    await settle()
    assert fill.received == len(big) - 4096
    assert sum(len(b) for b in fill._blocks) <= 6 << 20  # bounded, not the whole blob
    late = bytearray()
    second = asyncio.create_task(collect(fill, late))
    await settle()
    assert len(early) == len(late) == len(big) - 4096  # streamed before the end arrived
    await feed.queue.put(big[len(big) - 4096 :])
    await feed.queue.put(None)
    await task
    await asyncio.gather(first, second)
    assert bytes(early) == bytes(late) == big
    assert fill.verified and store.path_for(key).read_bytes() == big
