"""Token buckets behind clients.rate_limits (local arithmetic, same as the Redis script)."""

from __future__ import annotations

import pytest

from gateway.access.quota import Buckets, Quota, principal_key
from gateway.errors import TooManyRequests
from gateway.metrics import Metrics
from gateway.settings import RateLimitSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_burst_then_refills_at_the_rate() -> None:
    """burst 3 at 2/s: three at once, the fourth waits 0.5 s, allowed again after it."""
    clock = Clock()
    buckets = Buckets(clock=clock)
    assert [buckets.take("k", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", 2.0, 3) == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("k", 2.0, 3) == 0.0
    assert buckets.take("other", 2.0, 3) == 0.0


async def test_bytes_over_the_allowance_refuse_the_next_request_with_retry_after() -> None:
    """bytes_per_second 1000: after 5000 bytes the caller waits about 4 s (Retry-After 4)."""
    clock = Clock()
    metrics = Metrics()
    quota = Quota(RateLimitSettings(100.0, 100, 1000.0), metrics, clock=clock)
    await quota.admit("user:alice")
    await quota.charge_bytes("user:alice", 5000)
    with pytest.raises(TooManyRequests) as refused:
        await quota.admit("user:alice")
    assert refused.value.headers["Retry-After"] == "4"
    clock.now += 4.0
    await quota.admit("user:alice")


def test_anonymous_callers_are_told_apart_by_address_users_by_name() -> None:
    """A user named like an address never shares a bucket with that address."""
    assert principal_key(None, "192.0.2.1") != principal_key("192.0.2.1", "192.0.2.1")
    assert principal_key("alice", "192.0.2.1") == principal_key("alice", "198.51.100.2")
