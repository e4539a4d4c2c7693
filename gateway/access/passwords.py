"""Checking a (user, password) pair against the htpasswd users, at bcrypt's cost only once.

bcrypt is deliberately slow (tens of milliseconds) and synchronous, so it runs in a worker
thread. A pair that verified is remembered for ``ttl`` seconds under an HMAC of the pair with a
key made fresh in each process: the password itself is never stored, and the cache key is
useless outside this process. A remembered pair counts only while the user's htpasswd hash is
still the one it was checked against, so a password change or removal takes effect at the next
reload. Concurrent checks of one pair share a single bcrypt run.

bcrypt work is bounded: at most ``workers`` runs at a time (so logins never take every thread
of the default executor, which Vault and file reads share) and at most ``max_pending`` runs
running or waiting. Past that, ``verify`` raises :class:`PasswordCheckBusy` at once instead of
queueing: an unknown user costs a bcrypt run (no user probing), so without the bound a flood
of logins from many addresses, each under the per-address limit, would queue unbounded work.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

import bcrypt

from ..caching import CoalescingCache
from .htpasswd import Htpasswd

VERIFIED_TTL = 60.0
BCRYPT_WORKERS = 2
# 32 runs of ~50-100 ms on 2 workers: a login waits at most about a second before its turn.
BCRYPT_MAX_PENDING = 32
# bcrypt reads at most 72 bytes of a password; `htpasswd -B` hashes that prefix, so we check it.
BCRYPT_MAX_BYTES = 72
# Checked for unknown users so a miss costs as long as a wrong password (no user probing).
_DUMMY_HASH = b"$2b$10$3Q1RGX0VBqQulIpgTMavF.4QrjTNZ3BfCWPi44MwPLeMGlKhEe/qK"


class _Mismatch(Exception):
    """The password did not verify (never leaves this module)."""


class PasswordCheckBusy(Exception):
    """Too many bcrypt runs are pending; the caller should retry shortly."""


class PasswordChecker:
    """``await verify(user, password)`` → bool."""

    def __init__(
        self,
        users: Htpasswd,
        *,
        ttl: float = VERIFIED_TTL,
        clock: Callable[[], float] = time.monotonic,
        workers: int = BCRYPT_WORKERS,
        max_pending: int = BCRYPT_MAX_PENDING,
    ) -> None:
        self._users = users
        self._workers = asyncio.Semaphore(workers)
        self._max_pending = max_pending
        self.pending = 0
        self._ttl = ttl
        self._key = secrets.token_bytes(32)
        # HMAC(user, password) → the htpasswd hash the pair verified against.
        self._verified: CoalescingCache[bytes, bytes] = CoalescingCache(maxsize=4096, clock=clock)

    def _pair_key(self, user: str, password: str) -> bytes:
        message = user.encode() + b"\0" + password.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    async def verify(self, user: str, password: str) -> bool:
        """True when the pair matches; PasswordCheckBusy when the bcrypt queue is full."""
        stored = self._users.get(user)
        key = self._pair_key(user, password)
        cached = self._verified.peek(key)
        if cached is not None:
            if stored is not None and hmac.compare_digest(cached, stored):
                return True
            self._verified.invalidate(key)  # the user's entry changed since

        async def check() -> tuple[bytes, float]:
            candidate = password.encode()[:BCRYPT_MAX_BYTES]
            if self.pending >= self._max_pending:
                raise PasswordCheckBusy
            self.pending += 1
            try:
                async with self._workers:
                    ok = await asyncio.to_thread(bcrypt.checkpw, candidate, stored or _DUMMY_HASH)
            finally:
                self.pending -= 1
            if not ok or stored is None:
                raise _Mismatch
            return stored, self._ttl

        try:
            await self._verified.get_or_load(key, check)
        except _Mismatch:
            return False
        return True
