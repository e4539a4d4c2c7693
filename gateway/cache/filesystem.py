"""The filesystem store: one plain file per object, published by an atomic rename.

Layout under ``cache.dir``::

    <upstream>[/tenants/<tenant>]/blobs/<algorithm>/<hex[:2]>/<hex>       a blob
    <upstream>[/tenants/<tenant>]/manifests/<algorithm>/<hex[:2]>/<hex>   a manifest
    <upstream>[/tenants/<tenant>]/repositories/<name>/_links/<algorithm>/<hex>   seen in <name>
    _tmp/<random>                                                         a fill in progress

A fill writes to ``_tmp`` while hashing, compares with the digest and only then renames the
file into place, so a published path always holds verified bytes. The rename may come before
the fsync (``verify``, so callers get their last byte without waiting for the disk); a durable
``_tmp/<name>.unsynced`` marker then names the file until it is fsynced, and a start after a
crash removes a file whose marker is left. Every blocking call runs
in a worker thread. A file's mtime is its last use (touched on hits) for LRU eviction.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

from .digests import hasher_for
from .store import ContentKey, DigestMismatch, Entry, Kind, StoreUnusable

TMP = "_tmp"
UNSYNCED = ".unsynced"  # _tmp/<name>.unsynced: names a published file not yet fsynced
TENANTS = "tenants"
REPOSITORIES = "repositories"
LINKS = "_links"
KINDS: tuple[Kind, ...] = ("blobs", "manifests")
# Free space kept for everything else on the filesystem: below it the store takes no content.
RESERVE = 64 << 20
_ALGORITHMS = ("sha256", "sha512")


def namespace_for(upstream: str, tenant: str | None, *, per_tenant: bool = False) -> str:
    """``<upstream>``, or ``<upstream>/tenants/t-<tenant>`` (``.../none`` for no tenant)."""
    if not per_tenant:
        return upstream
    name = "none" if not tenant else f"t-{quote(tenant, safe='')}"
    return f"{upstream}/{TENANTS}/{name}"


def tenant_of(namespace: str) -> tuple[str, str | None]:
    upstream, _, rest = namespace.partition(f"/{TENANTS}/")
    return upstream, (unquote(rest[2:]) if rest.startswith("t-") else None)


class FilesystemWriter:
    """A temp file being filled: write+hash in a thread, pread for followers, rename on commit."""

    def __init__(self, store: FilesystemStore, key: ContentKey, path: Path, fd: int) -> None:
        self._store, self.key, self.path, self._fd = store, key, path, fd
        self._hasher = hasher_for(key.digest)
        self._written = 0
        self._closed = False
        self._final: Path | None = None  # published by verify(), not yet fsynced
        self._marker: Path | None = None

    @property
    def written(self) -> int:
        return self._written

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)
        self._written += len(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self._store.mark_full()
                    raise StoreUnusable(exc.errno, "cache filesystem is full") from exc
                raise
            view = view[n:]
        self._hasher.update(data)  # releases the GIL for large buffers

    async def read_at(self, offset: int, size: int) -> bytes:
        return await asyncio.to_thread(os.pread, self._fd, size, offset)

    async def verify(self) -> None:
        """Compare what was written with the digest and publish it, before :meth:`commit`.

        DigestMismatch when the bytes are wrong (nothing is published). When they match, the
        file is renamed into place before it is fsynced, so a fill can hand out the last byte
        and every later reader finds the file while :meth:`commit` makes it durable. Until then
        a durable marker in ``_tmp`` names it: after a crash, :meth:`FilesystemStore.start`
        removes a published file whose marker is left (a miss next time, never torn bytes).
        """
        self._check_digest()
        await asyncio.to_thread(self._publish_early)

    def _check_digest(self) -> None:
        actual = f"{self._hasher.name}:{self._hasher.hexdigest()}"
        if actual != self.key.digest:
            raise DigestMismatch(f"content hashed to {actual}, expected {self.key.digest}")

    def _publish_early(self) -> None:
        final = self._store.path_for(self.key)
        marker = self.path.with_name(self.path.name + UNSYNCED)
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, os.fsencode(final))
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(marker.parent)  # the marker is durable before the rename can be
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.path, final)
        self._marker, self._final = marker, final

    async def commit(self) -> Entry:
        return await asyncio.to_thread(self._commit)

    def _commit(self) -> Entry:
        if self._final is not None and self._marker is not None:  # verify() published it
            os.fsync(self._fd)
            _fsync_dir(self._final.parent)
            os.unlink(self._marker)
            self._marker = None
            self._store.forget_temp(self.path)
            return Entry(self.key, self._written, time.time())
        try:
            self._check_digest()
        except DigestMismatch:
            self._discard()
            raise
        os.fsync(self._fd)
        final = self._store.path_for(self.key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.path, final)  # atomic on one filesystem: readers see all or nothing
        self._store.forget_temp(self.path)
        _fsync_dir(final.parent)
        return Entry(self.key, self._written, time.time())

    async def abort(self) -> None:
        await asyncio.to_thread(self._discard)

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._marker is not None:  # published but not made durable: withdraw it
            with contextlib.suppress(FileNotFoundError):
                if self._final is not None:
                    os.unlink(self._final)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._marker)
            self._marker = None
        self._store.forget_temp(self.path)

    def release(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemStore:
    """Content-addressed files under one directory (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._problem: str | None = None
        self._free = 0
        self._active: set[str] = set()  # temp names of this process's fills

    def path_for(self, key: ContentKey) -> Path:
        algorithm, _, encoded = key.digest.partition(":")
        return self.root / key.namespace / key.kind / algorithm / encoded[:2] / encoded

    def _link_path(self, namespace: str, name: str, digest: str) -> Path:
        algorithm, _, encoded = digest.partition(":")
        return self.root / namespace / REPOSITORIES / name / LINKS / algorithm / encoded

    async def start(self) -> list[Entry]:
        await asyncio.to_thread(lambda: (self.root / TMP).mkdir(parents=True, exist_ok=True))
        await self.sweep(0)
        await self.check()
        return await asyncio.to_thread(lambda: list(self.scan()))

    def scan(self) -> Iterator[Entry]:
        """Every published object (blocking: call it in a thread)."""
        for path, key in self._walk():
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            yield Entry(key, st.st_size, st.st_mtime)

    def _walk(self) -> Iterator[tuple[Path, ContentKey]]:
        if not self.root.is_dir():
            return
        for upstream in sorted(self.root.iterdir()):
            if upstream.name == TMP or not upstream.is_dir():
                continue
            yield from self._walk_namespace(upstream, upstream.name)
            tenants = upstream / TENANTS
            if tenants.is_dir():
                for tenant in sorted(tenants.iterdir()):
                    yield from self._walk_namespace(
                        tenant, f"{upstream.name}/{TENANTS}/{tenant.name}"
                    )

    def _walk_namespace(self, base: Path, namespace: str) -> Iterator[tuple[Path, ContentKey]]:
        for kind in KINDS:
            for algorithm in _ALGORITHMS:
                folder = base / kind / algorithm
                if not folder.is_dir():
                    continue
                for prefix in sorted(folder.iterdir()):
                    if not prefix.is_dir():
                        continue
                    for file in sorted(prefix.iterdir()):
                        yield file, ContentKey(namespace, kind, f"{algorithm}:{file.name}")

    async def open_writer(self, key: ContentKey) -> FilesystemWriter:
        if self._problem is not None:
            raise StoreUnusable(errno.EIO, self._problem)
        name = uuid.uuid4().hex
        path = self.root / TMP / name

        def create() -> int:
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)

        fd = await asyncio.to_thread(create)
        self._active.add(name)
        return FilesystemWriter(self, key, path, fd)

    def forget_temp(self, path: Path) -> None:
        self._active.discard(path.name)

    async def stat(self, key: ContentKey) -> Entry | None:
        path = self.path_for(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Entry(key, st.st_size, st.st_mtime)

    def local_path(self, key: ContentKey) -> Path | None:
        return self.path_for(key)

    async def read(self, key: ContentKey) -> bytes:
        return await asyncio.to_thread(self.path_for(key).read_bytes)

    async def touch(self, key: ContentKey) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.utime, self.path_for(key))

    async def delete(self, key: ContentKey) -> int:
        return await asyncio.to_thread(self.delete_sync, key)

    def delete_sync(self, key: ContentKey) -> int:
        path = self.path_for(key)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    async def link(self, namespace: str, name: str, digest: str) -> None:
        path = self._link_path(namespace, name, digest)

        def create() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

        await asyncio.to_thread(create)

    async def linked(self, namespace: str, name: str, digest: str) -> bool:
        return await asyncio.to_thread(self._link_path(namespace, name, digest).is_file)

    def repositories(self, namespace: str) -> Iterator[tuple[str, set[str]]]:
        """(name, digests linked to it) for every repository of a namespace (blocking)."""
        base = self.root / namespace / REPOSITORIES
        if not base.is_dir():
            return
        for links in sorted(base.rglob(LINKS)):
            name = str(links.parent.relative_to(base))
            digests = {
                f"{algorithm.name}:{file.name}"
                for algorithm in links.iterdir() if algorithm.is_dir()
                for file in algorithm.iterdir()
            }  # fmt: skip
            yield name, digests

    def unlink_repository(self, namespace: str, name: str) -> None:
        shutil.rmtree(self.root / namespace / REPOSITORIES / name / LINKS, ignore_errors=True)

    async def sweep(self, older_than: float) -> int:
        return await asyncio.to_thread(self._sweep, older_than)

    def _sweep(self, older_than: float) -> int:
        folder = self.root / TMP
        removed = 0
        cutoff = time.time() - older_than
        if not folder.is_dir():
            return 0
        for file in folder.iterdir():
            if file.name.removesuffix(UNSYNCED) in self._active:
                continue
            with contextlib.suppress(FileNotFoundError):
                if file.stat().st_mtime <= cutoff:
                    if file.name.endswith(UNSYNCED):
                        self._withdraw(file)
                    file.unlink()
                    removed += 1
        return removed

    def _withdraw(self, marker: Path) -> None:
        """A crash left a published file that may not be on disk whole: remove it."""
        target = Path(os.fsdecode(marker.read_bytes()))
        if target.is_relative_to(self.root) and TMP not in target.relative_to(self.root).parts:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()

    def problem(self) -> str | None:
        return self._problem

    def mark_full(self) -> None:
        self._problem = "cache filesystem is full"
        self._free = 0

    async def check(self) -> None:
        self._problem, self._free = await asyncio.to_thread(self._check)

    def _check(self) -> tuple[str | None, int]:
        try:
            (self.root / TMP).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cache dir {self.root} unusable: {exc.strerror or exc}", 0
        if not os.access(self.root / TMP, os.W_OK | os.X_OK):
            return f"cache dir {self.root} is not writable", 0
        st = os.statvfs(self.root)
        free = st.f_bavail * st.f_frsize
        if free < RESERVE:
            return f"cache filesystem is full ({free} bytes free)", free
        return None, free

    def has_room(self, size: int) -> bool:
        return self._problem is None and self._free - RESERVE >= size

    def note_used(self, size: int) -> None:
        self._free -= size
