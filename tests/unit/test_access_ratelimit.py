"""gateway.access.ratelimit: failed logins per address in a sliding window; caller address."""

from __future__ import annotations

import pytest

from gateway.access.ratelimit import LoginLimiter, client_address, parse_networks


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def test_address_is_refused_once_failures_reach_the_limit() -> None:
    """Below the limit: allowed; at the limit: Retry-After seconds."""
    limiter = LoginLimiter(3, 60, clock=Clock())
    for _ in range(2):
        limiter.failed("192.0.2.1")
        assert limiter.retry_after("192.0.2.1") is None
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 60


def test_retry_after_counts_down_to_when_the_oldest_failure_ages_out() -> None:
    """The wait ends when the window no longer holds `failures` failures."""
    clock = Clock()
    limiter = LoginLimiter(2, 60, clock=clock)
    limiter.failed("192.0.2.1")
    clock.now += 20
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 40
    clock.now += 39.5
    assert limiter.retry_after("192.0.2.1") == 1
    clock.now += 1
    assert limiter.retry_after("192.0.2.1") is None


def test_addresses_are_limited_independently() -> None:
    """One address's failures never refuse another."""
    limiter = LoginLimiter(1, 60, clock=Clock())
    limiter.failed("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") is not None
    assert limiter.retry_after("192.0.2.2") is None


def test_memory_is_bounded_by_maxsize() -> None:
    """A flood of distinct addresses evicts old entries instead of growing."""
    limiter = LoginLimiter(1, 60, maxsize=10, clock=Clock())
    for n in range(100):
        limiter.failed(f"10.0.0.{n}")
    assert len(limiter._seen) <= 10


TRUSTED = parse_networks(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.7", [], (), "203.0.113.7"),
        ("203.0.113.7", ["198.51.100.1"], (), "203.0.113.7"),  # not configured: ignored
        ("203.0.113.7", ["198.51.100.1"], TRUSTED, "203.0.113.7"),  # peer is no proxy
        ("10.1.2.3", ["198.51.100.1"], TRUSTED, "198.51.100.1"),
        ("10.1.2.3", ["1.1.1.1, 198.51.100.1, 10.9.9.9"], TRUSTED, "198.51.100.1"),
        ("10.1.2.3", ["1.1.1.1", "198.51.100.1"], TRUSTED, "198.51.100.1"),
        ("::1", ["2001:db8::5"], TRUSTED, "2001:db8::5"),
        ("10.1.2.3", [], TRUSTED, "10.1.2.3"),
        ("10.1.2.3", ["10.4.4.4"], TRUSTED, "10.4.4.4"),  # all hops trusted: the first
        (None, [], (), "unknown"),
    ],
)
def test_client_address(
    peer: str | None, forwarded: list[str], trusted: tuple[object, ...], expected: str
) -> None:
    """X-Forwarded-For counts only behind a trusted proxy, read from the right."""
    assert client_address(peer, forwarded, trusted) == expected  # type: ignore[arg-type]
