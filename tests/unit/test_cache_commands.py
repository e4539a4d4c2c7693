"""`cache stats|purge|verify` over a filesystem store: what they count, remove and report."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from gateway.cache import commands
from gateway.cache.filesystem import FilesystemStore, namespace_for
from gateway.cache.store import ContentKey


async def put(store: FilesystemStore, namespace: str, data: bytes, name: str) -> ContentKey:
    key = ContentKey(namespace, "blobs", "sha256:" + hashlib.sha256(data).hexdigest())
    writer = await store.open_writer(key)
    await writer.write(data)
    await writer.commit()
    writer.release()
    await store.link(namespace, name, key.digest)
    return key


@pytest.fixture
async def filled(tmp_path: Path) -> tuple[FilesystemStore, list[ContentKey]]:
    store = FilesystemStore(tmp_path / "cache")
    await store.start()
    keys = [
        await put(store, "docker.io", b"a" * 100, "library/alpine"),
        await put(store, "docker.io", b"b" * 200, "library/busybox"),
        await put(store, namespace_for("ghcr.io", "team-a", per_tenant=True), b"c" * 50, "org/app"),
    ]
    old = time.time() - 7200
    os.utime(store.path_for(keys[0]), (old, old))
    return store, keys


def test_stats_counts_per_upstream(
    filled: tuple[FilesystemStore, list[ContentKey]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Totals and one line per upstream (tenant namespaces count under their upstream)."""
    store, _ = filled
    assert commands.stats(store) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and "350 bytes" in out
    assert "docker.io: 2 entries (2 blobs, 0 manifests), 300 bytes" in out
    assert "ghcr.io: 1 entries (1 blobs, 0 manifests), 50 bytes" in out


def test_purge_older_than_and_by_upstream(filled: tuple[FilesystemStore, list[ContentKey]]) -> None:
    """--older-than removes only content unused for that long; --upstream only that upstream's."""
    store, keys = filled
    assert commands.purge(store, None, None, 3600) == 0
    assert [store.path_for(k).exists() for k in keys] == [False, True, True]
    commands.purge(store, "ghcr.io", None, None)
    assert [store.path_for(k).exists() for k in keys] == [False, True, False]


async def test_purge_by_repository_keeps_content_other_repositories_use(tmp_path: Path) -> None:
    """A layer shared by two repositories survives purging one of them."""
    store = FilesystemStore(tmp_path / "cache")
    await store.start()
    shared = await put(store, "docker.io", b"shared", "library/a")
    await store.link("docker.io", "library/b", shared.digest)
    own = await put(store, "docker.io", b"own", "library/a")

    commands.purge(store, None, "docker.io/library/a", None)

    assert store.path_for(shared).exists() and not store.path_for(own).exists()


def test_verify_reports_and_removes_corrupt_entries(
    filled: tuple[FilesystemStore, list[ContentKey]], capsys: pytest.CaptureFixture[str]
) -> None:
    """verify exits 1 naming the altered file, removes it, and keeps the intact ones."""
    store, keys = filled
    store.path_for(keys[1]).write_bytes(b"x" * 200)
    assert commands.verify(store) == 1
    out = capsys.readouterr().out
    assert keys[1].digest in out and keys[0].digest not in out
    assert not store.path_for(keys[1]).exists() and store.path_for(keys[0]).exists()
    assert commands.verify(store) == 0
