"""LRU accounting: evict past the high watermark down to the low one, oldest use first,
never a pinned entry."""

from __future__ import annotations

from gateway.cache.eviction import LRU
from gateway.cache.store import ContentKey, Entry


def key(n: int) -> ContentKey:
    return ContentKey("up", "blobs", f"sha256:{n:064x}")


def test_nothing_is_evicted_below_max_size() -> None:
    """At or under max_size no entry is chosen."""
    lru = LRU(100)
    lru.add(key(1), 60)
    lru.add(key(2), 40)
    assert lru.victims() == [] and lru.total == 100


def test_least_recently_used_go_first_down_to_the_low_watermark() -> None:
    """Past max_size entries go oldest use first until the total is at most 90 %."""
    lru = LRU(100)
    for n in range(1, 6):
        lru.add(key(n), 25)
    lru.touch(key(1))  # 1 is now the most recently used
    assert lru.victims() == [key(2), key(3)]
    assert lru.total == 75 and key(1) in lru


def test_pinned_entries_are_skipped() -> None:
    """An entry with an open reader is never chosen, even when it is the oldest."""
    lru = LRU(100)
    for n in range(1, 5):
        lru.add(key(n), 30)
    lru.pin(key(1))
    assert key(1) not in lru.victims()
    lru.unpin(key(1))
    assert not lru.pinned(key(1))


def test_load_orders_by_last_access() -> None:
    """Entries found at start are ordered by their recorded last use."""
    lru = LRU(50)
    lru.load([Entry(key(1), 30, accessed=200.0), Entry(key(2), 30, accessed=100.0)])
    assert lru.victims() == [key(2)]
