"""``registry-gateway cache stats|purge|verify``: operate the filesystem store from a shell.

The commands read ``cache.dir`` from the same config as ``serve`` and may run while the gateway
serves: a file they remove is a miss for the gateway on its next request for it.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from collections import defaultdict
from pathlib import Path

from ..settings import ConfigError, load_settings
from .digests import hasher_for
from .filesystem import FilesystemStore, tenant_of
from .store import Entry

HASH_CHUNK = 1 << 20
EXIT_CONFIG = 2


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = commands.add_parser(
        "cache", help="inspect and maintain the cache (stats, purge, verify)"
    )
    actions = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    for name, text in (
        ("stats", "entries, bytes, oldest access, per upstream"),
        ("purge", "remove cached content"),
        ("verify", "re-hash stored content; exit 1 naming every corrupt entry (removed)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", metavar="PATH", help="config file (as for serve)")
        if name == "purge":
            action.add_argument("--upstream", metavar="KEY", help="only this upstream's content")
            action.add_argument(
                "--repository", metavar="GLOB",
                help="only content seen in repositories matching GLOB (name or upstream/name)",
            )  # fmt: skip
            action.add_argument(
                "--older-than", metavar="SECONDS", type=float,
                help="only content not used for SECONDS",
            )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    store = FilesystemStore(settings.cache.dir)
    if args.cache_command == "stats":
        return stats(store)
    if args.cache_command == "purge":
        return purge(store, args.upstream, args.repository, args.older_than)
    return verify(store)


def _upstream(entry: Entry) -> str:
    return tenant_of(entry.key.namespace)[0]


def stats(store: FilesystemStore) -> int:
    entries = list(store.scan())
    rows: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        rows[_upstream(entry)].append(entry)
    print(f"cache {store.root}: {_summary(entries)}")
    for upstream, items in sorted(rows.items()):
        print(f"  {upstream}: {_summary(items)}")
    return 0


def _summary(entries: list[Entry]) -> str:
    blobs = sum(1 for e in entries if e.key.kind == "blobs")
    total = sum(e.size for e in entries)
    oldest = min((e.accessed for e in entries), default=None)
    when = "-" if oldest is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(oldest))
    return (
        f"{len(entries)} entries ({blobs} blobs, {len(entries) - blobs} manifests), "
        f"{total} bytes, oldest access {when}"
    )


def purge(
    store: FilesystemStore, upstream: str | None, repository: str | None, older_than: float | None
) -> int:
    entries = [e for e in store.scan() if upstream is None or _upstream(e) == upstream]
    if older_than is not None:
        cutoff = time.time() - older_than
        entries = [e for e in entries if e.accessed <= cutoff]
    if repository is not None:
        entries = _in_repositories(store, entries, repository)
    freed = sum(store.delete_sync(e.key) for e in entries)
    print(f"purged {len(entries)} entries, {freed} bytes")
    return 0


def _in_repositories(store: FilesystemStore, entries: list[Entry], pattern: str) -> list[Entry]:
    """Entries linked only from repositories matching ``pattern`` (whose links are dropped)."""
    chosen: list[Entry] = []
    for namespace in sorted({e.key.namespace for e in entries}):
        upstream = tenant_of(namespace)[0]
        matching: set[str] = set()
        others: set[str] = set()
        for name, digests in store.repositories(namespace):
            if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(
                f"{upstream}/{name}", pattern
            ):
                matching |= digests
                store.unlink_repository(namespace, name)
            else:
                others |= digests
        doomed = matching - others
        chosen += [e for e in entries if e.key.namespace == namespace and e.key.digest in doomed]
    return chosen


def verify(store: FilesystemStore) -> int:
    corrupt = 0
    checked = 0
    for entry in store.scan():
        checked += 1
        if not _intact(store.path_for(entry.key), entry.key.digest):
            corrupt += 1
            store.delete_sync(entry.key)
            print(f"corrupt (removed): {entry.key.namespace} {entry.key.kind} {entry.key.digest}")
    print(f"verified {checked} entries, {corrupt} corrupt")
    return 1 if corrupt else 0


def _intact(path: Path, digest: str) -> bool:
    hasher = hasher_for(digest)
    try:
        with path.open("rb") as file:
            while chunk := file.read(HASH_CHUNK):
                hasher.update(chunk)
    except FileNotFoundError:
        return True  # evicted meanwhile: nothing wrong is stored
    return bool(f"{hasher.name}:{hasher.hexdigest()}" == digest)
