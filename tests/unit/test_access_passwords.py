"""gateway.access.passwords: bcrypt off the loop, verified pairs remembered by a keyed hash."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from gateway.access import passwords
from gateway.access.htpasswd import Htpasswd
from gateway.access.passwords import PasswordChecker
from tests.access.identities import write_htpasswd


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the threads each real bcrypt.checkpw ran on."""
    calls: list[str] = []
    real: Callable[[bytes, bytes], bool] = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(threading.current_thread().name)
        return real(password, hashed)

    monkeypatch.setattr(passwords.bcrypt, "checkpw", counting)
    return calls


@pytest.fixture
def users(tmp_path: Path) -> Htpasswd:
    return Htpasswd(write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland", "bob": "b"}))


async def test_accepts_the_right_password_and_refuses_others(users: Htpasswd) -> None:
    """Right password: True; wrong password or unknown user: False."""
    checker = PasswordChecker(users)
    assert await checker.verify("alice", "wonderland") is True
    assert await checker.verify("alice", "wonderland!") is False
    assert await checker.verify("nobody", "wonderland") is False


async def test_bcrypt_runs_on_a_worker_thread(users: Htpasswd, bcrypt_calls: list[str]) -> None:
    """The event loop's thread never runs bcrypt."""
    await PasswordChecker(users).verify("alice", "wonderland")
    assert bcrypt_calls and threading.main_thread().name not in bcrypt_calls


async def test_unknown_users_cost_a_bcrypt_run_too(
    users: Htpasswd, bcrypt_calls: list[str]
) -> None:
    """A miss on the user name takes as long as a wrong password: no probing for users."""
    assert await PasswordChecker(users).verify("nobody", "x") is False
    assert len(bcrypt_calls) == 1


async def test_verified_pair_is_remembered_until_ttl(
    users: Htpasswd, bcrypt_calls: list[str]
) -> None:
    """A second check of a verified pair skips bcrypt; after the TTL it runs again."""
    clock = Clock()
    checker = PasswordChecker(users, ttl=60, clock=clock)
    for _ in range(3):
        assert await checker.verify("alice", "wonderland")
    assert len(bcrypt_calls) == 1
    clock.now += 61
    assert await checker.verify("alice", "wonderland")
    assert len(bcrypt_calls) == 2


async def test_failures_are_never_remembered(users: Htpasswd, bcrypt_calls: list[str]) -> None:
    """Each wrong attempt pays bcrypt again (and feeds the rate limiter upstream of this)."""
    checker = PasswordChecker(users)
    for _ in range(3):
        assert await checker.verify("alice", "guess") is False
    assert len(bcrypt_calls) == 3


async def test_concurrent_checks_of_one_pair_share_a_bcrypt_run(
    users: Htpasswd, bcrypt_calls: list[str]
) -> None:
    """Ten simultaneous logins of one user cost one bcrypt run."""
    checker = PasswordChecker(users)
    results = await asyncio.gather(*(checker.verify("alice", "wonderland") for _ in range(10)))
    assert all(results) and len(bcrypt_calls) == 1


async def test_changed_password_voids_the_remembered_pair(tmp_path: Path) -> None:
    """After the htpasswd entry changes, the old password fails even though it was cached."""
    path = write_htpasswd(tmp_path / "htpasswd", {"alice": "old"})
    users = Htpasswd(path)
    checker = PasswordChecker(users)
    assert await checker.verify("alice", "old")
    write_htpasswd(path, {"alice": "new"})
    await users.refresh()
    assert await checker.verify("alice", "old") is False
    assert await checker.verify("alice", "new") is True


async def test_remembered_pairs_are_keyed_by_a_per_process_hmac(users: Htpasswd) -> None:
    """The cache holds 32-byte HMACs, different for each checker; never the password."""
    first, second = PasswordChecker(users), PasswordChecker(users)
    assert first._pair_key("alice", "wonderland") != second._pair_key("alice", "wonderland")
    await first.verify("alice", "wonderland")
    keys = list(first._verified._store.keys())
    assert len(keys) == 1 and len(keys[0]) == 32 and b"wonderland" not in keys[0]


async def test_long_passwords_are_checked_on_their_first_72_bytes(tmp_path: Path) -> None:
    """bcrypt (and `htpasswd -B`) use 72 bytes; longer passwords work instead of erroring."""
    long_password = "x" * 100
    path = write_htpasswd(tmp_path / "htpasswd", {"alice": long_password[:72]})
    assert await PasswordChecker(Htpasswd(path)).verify("alice", long_password)


async def test_bcrypt_queue_full_refuses_at_once(
    users: Htpasswd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past max_pending bcrypt runs a check is refused at once; the queued ones still finish."""
    release = threading.Event()
    real: Callable[[bytes, bytes], bool] = bcrypt.checkpw

    def slow(password: bytes, hashed: bytes) -> bool:
        release.wait(10)
        return real(password, hashed)

    monkeypatch.setattr(passwords.bcrypt, "checkpw", slow)
    checker = PasswordChecker(users, workers=1, max_pending=2)
    queued = [
        asyncio.create_task(checker.verify("alice", "wonderland")),
        asyncio.create_task(checker.verify("bob", "b")),
    ]
    await asyncio.sleep(0.05)
    assert checker.pending == 2
    with pytest.raises(passwords.PasswordCheckBusy):
        await checker.verify("nobody", "x")
    release.set()
    assert await asyncio.gather(*queued) == [True, True]
    assert checker.pending == 0
    assert await checker.verify("nobody", "x") is False


async def test_bcrypt_queue_runs_at_most_workers_at_a_time(
    users: Htpasswd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent checks of distinct pairs run on at most `workers` threads at once."""
    running, peak = 0, 0
    lock = threading.Lock()
    real: Callable[[bytes, bytes], bool] = bcrypt.checkpw

    def counted(password: bytes, hashed: bytes) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return real(password, hashed)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(passwords.bcrypt, "checkpw", counted)
    checker = PasswordChecker(users, workers=2, max_pending=32)
    results = await asyncio.gather(*(checker.verify(f"user{i}", "x") for i in range(8)))
    assert results == [False] * 8 and 1 <= peak <= 2
