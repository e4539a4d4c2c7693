"""gateway.heap: a trim after the open connections fell from a peak, not on every close."""

from __future__ import annotations

import asyncio

from gateway.heap import HeapTrimmer


async def test_trims_once_after_a_burst_went_away() -> None:
    """Falling from 200 open to 100 schedules one trim; smaller drops and repeats do not."""
    calls: list[int] = []
    heap = HeapTrimmer(min_drop=64, delay=0.01, trim=lambda: calls.append(1))
    for open_connections in range(200, 150, -1):
        heap.note(open_connections)  # a drop of 50: under min_drop
    await asyncio.sleep(0.05)
    assert calls == []
    for open_connections in range(150, 90, -1):
        heap.note(open_connections)  # now at half the peak and 110 fewer: one trim
    await asyncio.sleep(0.1)
    assert calls == [1] and heap.trims == 1
    heap.note(80)  # the peak was reset by the trim: 80 is no burst gone
    await asyncio.sleep(0.05)
    assert calls == [1]


async def test_small_servers_never_trim() -> None:
    """A gateway that never had min_drop connections open never trims."""
    calls: list[int] = []
    heap = HeapTrimmer(min_drop=64, delay=0.01, trim=lambda: calls.append(1))
    for open_connections in [10, 40, 0, 60, 0]:
        heap.note(open_connections)
    await asyncio.sleep(0.05)
    assert calls == []
