"""Least-recently-used accounting with high/low watermarks.

Past ``max_size`` (the high watermark) entries are evicted, oldest use first, until the store
holds at most ``low`` bytes. An entry with an open reader is pinned and never chosen; a fill in
progress is not an entry until it is published, so it cannot be chosen either.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

from .store import ContentKey, Entry

LOW_WATERMARK = 0.9


class LRU:
    def __init__(self, max_size: int, low_ratio: float = LOW_WATERMARK) -> None:
        self.max_size = max_size
        self.low = int(max_size * low_ratio)
        self.total = 0
        self._sizes: OrderedDict[ContentKey, int] = OrderedDict()
        self._pins: Counter[ContentKey] = Counter()

    def __contains__(self, key: ContentKey) -> bool:
        return key in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def load(self, entries: list[Entry]) -> None:
        """What the store already holds, oldest use first."""
        for entry in sorted(entries, key=lambda e: e.accessed):
            self.add(entry.key, entry.size)

    def add(self, key: ContentKey, size: int) -> None:
        self.total += size - self._sizes.pop(key, 0)
        self._sizes[key] = size

    def touch(self, key: ContentKey) -> None:
        if key in self._sizes:
            self._sizes.move_to_end(key)

    def remove(self, key: ContentKey) -> None:
        self.total -= self._sizes.pop(key, 0)

    def pin(self, key: ContentKey) -> None:
        self._pins[key] += 1

    def unpin(self, key: ContentKey) -> None:
        self._pins[key] -= 1
        if self._pins[key] <= 0:
            del self._pins[key]

    def pinned(self, key: ContentKey) -> bool:
        return self._pins[key] > 0

    def victims(self) -> list[ContentKey]:
        """Entries to evict now (removed from the accounting), none below the high watermark."""
        if self.total <= self.max_size:
            return []
        chosen: list[ContentKey] = []
        for key in list(self._sizes):
            if self.total <= self.low:
                break
            if self._pins[key] > 0:
                continue
            chosen.append(key)
            self.remove(key)
        return chosen
