"""The manifest index: what a tag pointed to and when that was checked, and remembered 404s.

A tag answer depends on the caller's ``Accept`` (an index and a single-platform manifest can
both answer one tag), so entries are keyed by the accepted media types as well. Only the event
loop touches these maps; the clock is injected so tests control time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cachetools import LRUCache

from ..oci import media

MAX_TAGS = 100_000


@dataclass
class TagEntry:
    digest: str
    media_type: str
    checked: float  # clock time of the last upstream confirmation


def accept_key(accepted: Iterable[str]) -> str:
    types = {t.split(";")[0].strip() for value in accepted for t in value.split(",")}
    return ",".join(sorted(t for t in types if t))


def acceptable(media_type: str, accept: str) -> bool:
    """Whether a manifest of ``media_type`` may answer a caller whose Accept is ``accept``."""
    if not accept:
        return True
    accepted = accept.split(",")
    return media_type in accepted or "*/*" in accepted


def media_type_of(body: bytes) -> str:
    """A stored manifest's media type, from its own ``mediaType`` (or its shape)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return media.OCI_MANIFEST
    if isinstance(parsed, dict):
        declared = parsed.get("mediaType")
        if isinstance(declared, str) and declared:
            return declared
        if "manifests" in parsed:
            return media.OCI_INDEX
    return media.OCI_MANIFEST


class TagIndex:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tags: LRUCache[tuple[str, str, str, str], TagEntry] = LRUCache(MAX_TAGS)
        self._missing: LRUCache[tuple[str, str, str, str], float] = LRUCache(MAX_TAGS)

    def get(self, namespace: str, name: str, tag: str, accept: str) -> TagEntry | None:
        return self._tags.get((namespace, name, tag, accept))

    def put(self, namespace: str, name: str, tag: str, accept: str, digest: str,
            media_type: str) -> None:  # fmt: skip
        self._tags[(namespace, name, tag, accept)] = TagEntry(digest, media_type, self.clock())
        self._missing.pop((namespace, name, tag, accept), None)

    def confirm(self, entry: TagEntry) -> None:
        entry.checked = self.clock()

    def age(self, entry: TagEntry) -> float:
        return self.clock() - entry.checked

    def drop(self, namespace: str, name: str, tag: str) -> None:
        """Forget every answer for a tag (a push through the gateway, a 404)."""
        for key in [k for k in self._tags if k[:3] == (namespace, name, tag)]:
            self._tags.pop(key, None)
        for key in [k for k in self._missing if k[:3] == (namespace, name, tag)]:
            self._missing.pop(key, None)

    def remember_missing(self, namespace: str, name: str, tag: str, accept: str,
                         ttl: float) -> None:  # fmt: skip
        if ttl > 0:
            self._missing[(namespace, name, tag, accept)] = self.clock() + ttl

    def known_missing(self, namespace: str, name: str, tag: str, accept: str) -> bool:
        until = self._missing.get((namespace, name, tag, accept))
        return until is not None and self.clock() < until
