"""Token responses, the coalescing cache and the media-type Accept policy."""

from __future__ import annotations

import asyncio

import pytest

from gateway.caching import CoalescingCache
from gateway.oci.media import DEFAULT_MANIFEST_ACCEPT, manifest_accept
from gateway.secret import Secret
from gateway.upstream.tokens import TokenResponseError, parse_token_response


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_access_token_preferred_and_defaults() -> None:
    """access_token wins over token; expires_in defaults to 60 and never goes below it."""
    issued = parse_token_response({"token": "a", "access_token": "b"})
    assert issued.value.reveal() == "b"
    assert 50 <= issued.ttl < 60
    assert parse_token_response({"token": "a", "expires_in": 5}).ttl >= 50
    assert 3200 < parse_token_response({"token": "a", "expires_in": 3600}).ttl < 3600


def test_issued_at_shortens_the_lifetime() -> None:
    """A token issued 200 s ago with 300 s to live is cached for under 100 s."""
    issued = parse_token_response(
        {"token": "t", "expires_in": 300, "issued_at": "2026-01-01T00:00:00Z"},
        now=lambda: 1767225600.0 + 200,
    )
    assert 0 < issued.ttl <= 100


@pytest.mark.parametrize("body", [None, [], {}, {"token": ""}, {"token": 5}, "x"])
def test_bodies_without_a_token_are_errors(body: object) -> None:
    """A 200 without a usable token is an error, not an empty bearer."""
    with pytest.raises(TokenResponseError):
        parse_token_response(body)


def test_issued_token_and_secret_hide_values() -> None:
    """Neither the token nor a Secret shows its value in repr or str."""
    issued = parse_token_response({"token": "s3cr3t-value"})
    assert "s3cr3t" not in repr(issued)
    assert "s3cr3t" not in repr(issued.value) and "s3cr3t" not in str(issued.value)
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


async def test_concurrent_misses_load_once() -> None:
    """N concurrent misses for one key run the loader once and all get its value."""
    cache: CoalescingCache[str, int] = CoalescingCache()
    calls = 0

    async def load() -> tuple[int, float]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 42, 60.0

    results = await asyncio.gather(*(cache.get_or_load("k", load) for _ in range(50)))
    assert calls == 1
    assert {value for value, _ in results} == {42}
    assert sorted(how for _, how in results) == ["joined"] * 49 + ["loaded"]
    assert await cache.get_or_load("k", load) == (42, "hit")


async def test_values_expire_with_their_ttl() -> None:
    """A value is served until its own TTL passes, then loaded again."""
    clock = Clock()
    cache: CoalescingCache[str, str] = CoalescingCache(clock=clock)
    versions = iter(["v1", "v2"])

    async def load() -> tuple[str, float]:
        return next(versions), 30.0

    assert (await cache.get_or_load("k", load))[0] == "v1"
    clock.now += 29
    assert (await cache.get_or_load("k", load)) == ("v1", "hit")
    clock.now += 2
    assert (await cache.get_or_load("k", load)) == ("v2", "loaded")


async def test_failed_load_is_not_cached_and_reaches_every_waiter() -> None:
    """A loader error goes to all concurrent waiters and the next call loads again."""
    cache: CoalescingCache[str, int] = CoalescingCache()
    attempts = 0

    async def boom() -> tuple[int, float]:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("down")

    results = await asyncio.gather(
        *(cache.get_or_load("k", boom) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert attempts == 1
    with pytest.raises(RuntimeError):
        await cache.get_or_load("k", boom)
    assert attempts == 2


async def test_zero_ttl_is_not_cached_and_invalidate_where() -> None:
    """A non-positive TTL skips caching; invalidate_where drops matching keys only."""
    cache: CoalescingCache[tuple[str, str], int] = CoalescingCache()
    cache.put(("a", "1"), 1, 0)
    assert cache.peek(("a", "1")) is None
    cache.put(("a", "1"), 1, 10)
    cache.put(("b", "1"), 2, 10)
    assert cache.invalidate_where(lambda k: k[0] == "a") == 1
    assert cache.peek(("b", "1")) == 2 and len(cache) == 1


async def test_cancelled_waiter_does_not_cancel_the_load() -> None:
    """One caller going away must not cancel the shared load for the others."""
    cache: CoalescingCache[str, int] = CoalescingCache()
    started = asyncio.Event()

    async def slow() -> tuple[int, float]:
        started.set()
        await asyncio.sleep(0.05)
        return 7, 60.0

    first = asyncio.create_task(cache.get_or_load("k", slow))
    await started.wait()
    second = asyncio.create_task(cache.get_or_load("k", slow))
    await asyncio.sleep(0)
    second.cancel()
    assert await first == (7, "loaded")
    assert cache.peek("k") == 7


@pytest.mark.parametrize(
    ("sent", "expected_extra"),
    [([], True), (["*/*"], True), (["application/json"], True),
     ([DEFAULT_MANIFEST_ACCEPT[2]], False),
     ([", ".join(DEFAULT_MANIFEST_ACCEPT) + ", */*"], False)],
)  # fmt: skip
def test_manifest_accept_policy(sent: list[str], expected_extra: bool) -> None:
    """Callers naming no manifest type get the four defaults added; others are kept as sent."""
    result = manifest_accept(sent)
    assert result[: len(sent)] == sent
    assert (result[len(sent) :] == list(DEFAULT_MANIFEST_ACCEPT)) is expected_extra
