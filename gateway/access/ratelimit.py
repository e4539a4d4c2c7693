"""Failed-login limiting per client address, and which address a request comes from.

A sliding window: an address with ``failures`` failed logins in the last ``window`` seconds is
refused (429 ``TOOMANYREQUESTS`` with ``Retry-After``) until the oldest of them ages out. While
refused, its attempts are not checked at all, correct passwords included: otherwise the answer
to a correct guess would still differ from a wrong one and the limit would be no limit.

The address is the TCP peer. ``X-Forwarded-For`` is read only when the peer is one of
``clients.trusted_proxies``; a caller could otherwise pick a fresh address per guess.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable, Sequence

from cachetools import TTLCache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class LoginLimiter:
    """``retry_after(address)`` → seconds to wait or None; ``failed(address)`` records one."""

    def __init__(
        self,
        failures: int = 10,
        window: float = 60.0,
        *,
        maxsize: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self._clock = clock
        # Bounded: a flood of addresses evicts the oldest instead of growing without end.
        self._seen: TTLCache[str, deque[float]] = TTLCache(maxsize, window, timer=clock)

    def _recent(self, address: str) -> deque[float] | None:
        times = self._seen.get(address)
        if times is None:
            return None
        horizon = self._clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        return times

    def retry_after(self, address: str) -> int | None:
        times = self._recent(address)
        if times is None or len(times) < self.failures:
            return None
        return max(1, math.ceil(times[0] + self.window - self._clock()))

    def failed(self, address: str) -> None:
        times = self._recent(address)
        if times is None:
            times = deque(maxlen=self.failures)
        times.append(self._clock())
        self._seen[address] = times  # re-insert: the entry lives `window` past its last failure


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses; ValueError names the bad one."""
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The caller's address: the peer, or behind trusted proxies the last untrusted hop."""
    address = peer or "unknown"
    if not trusted or not _within(address, trusted):
        return address
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    # Proxies append; walk from the right past our own proxies to the first foreign hop.
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return hops[0] if hops else address


def _within(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
