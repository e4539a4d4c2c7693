"""Loopback ports and HTTP readiness polling for the real components.

Every component binds 127.0.0.1 only; nothing here ever dials another address.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection

LOOPBACK = "127.0.0.1"

# /v2/ answers 401 when auth is on; that still proves the server is listening.
DEFAULT_OK_STATUSES: frozenset[int] = frozenset({200, 401})


def free_port(span: int = 1) -> int:
    """A TCP port P on 127.0.0.1 such that P..P+span-1 were all free a moment ago.

    The kernel picks P; the sockets are closed before returning, so a tiny race with other
    processes remains, and components started on it fail loudly if it was taken. `span` > 1
    serves servers that silently take neighbours (OpenBao's dev cluster listener is P+1).
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port + span - 1 <= 65535 and all(is_free(port + i) for i in range(1, span)):
            return port
    raise OSError(f"no run of {span} free ports found on {LOOPBACK}")


def is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of one GET, or None when nothing answered."""
    # No proxies: a http_proxy variable in the environment must never route loopback traffic.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], bool] = lambda: True,
) -> bool:
    """Poll `ready` until it holds (True), `alive` fails or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return True
        if not alive() or time.monotonic() >= deadline:
            return False
        # Back off gently: fast for quick starters, cheap for slow ones.
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def wait_for_http(
    url: str,
    timeout: float = 20.0,
    ok_statuses: Collection[int] = DEFAULT_OK_STATUSES,
    *,
    alive: Callable[[], bool] = lambda: True,
) -> int:
    """Poll `url` until it answers with one of `ok_statuses`; return that status.

    Raises TimeoutError (naming the last status seen) when it does not in time, or as
    soon as `alive()` turns False (the process behind the URL died).
    """
    last: list[int | None] = [None]

    def answered() -> bool:
        last[0] = http_status(url)
        return last[0] in ok_statuses

    started = time.monotonic()
    if wait_until(answered, timeout=timeout, alive=alive):
        assert last[0] is not None
        return last[0]
    reason = "its process exited" if not alive() else f"no ready answer within {timeout:.0f}s"
    raise TimeoutError(
        f"{url} not ready: {reason} after {time.monotonic() - started:.1f}s "
        f"(last status: {last[0]})"
    )
