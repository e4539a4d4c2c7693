"""The htpasswd file: ``user:bcrypt-hash`` lines (``htpasswd -B``), re-read when it changes.

Only bcrypt is accepted. Apache's other formats (``$apr1$`` MD5, ``{SHA}``, crypt, plain text)
are fast to brute-force from a leaked file, so a file holding one is refused with the line
number, at start-up as a config error and at reload as a logged error (the old users stay).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..log import get_logger

log = get_logger(__name__)

# bcrypt modular crypt format: $2a$/$2b$/$2y$, two-digit cost, 53 chars of bcrypt base64.
_BCRYPT = re.compile(rb"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_KINDS = [
    ("$apr1$", "Apache MD5 ($apr1$)"),
    ("{SHA}", "SHA-1 ({SHA})"),
    ("$1$", "MD5-crypt ($1$)"),
    ("$5$", "SHA-256-crypt ($5$)"),
    ("$6$", "SHA-512-crypt ($6$)"),
    ("$2", "malformed bcrypt"),
]
# Words the access rules give a meaning of their own: a user may not be called that.
RESERVED_USERS = frozenset({"anonymous", "*"})
POLL_INTERVAL = 1.0


class HtpasswdError(ValueError):
    """A line of the file is unusable; the message names the line."""


def parse_htpasswd(text: str) -> dict[str, bytes]:
    """``{user: bcrypt hash}``; blank lines and ``#`` comments are skipped."""
    entries: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise HtpasswdError(f"line {number}: expected user:hash")
        if user in RESERVED_USERS:
            raise HtpasswdError(f"line {number}: user name {user!r} is reserved by access rules")
        if user in entries:
            raise HtpasswdError(f"line {number}: user {user!r} appears twice")
        encoded = hashed.encode()
        if not _BCRYPT.fullmatch(encoded):
            kind = next((name for prefix, name in _KINDS if hashed.startswith(prefix)), None)
            kind = kind or ("crypt or plain text" if hashed else "an empty hash")
            raise HtpasswdError(
                f"line {number}: user {user!r} has a {kind} hash; only bcrypt is accepted "
                "(create entries with htpasswd -B)"
            )
        entries[user] = encoded
    return entries


def read_htpasswd(path: Path) -> dict[str, bytes]:
    """Read and parse ``path``; OSError and HtpasswdError propagate."""
    return parse_htpasswd(path.read_text(encoding="utf-8"))


def _stamp(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class Htpasswd:
    """The current users; ``watch()`` re-reads the file within a poll interval of a change.

    A rewrite that breaks the file keeps the previous users, so a typo never locks everyone out.
    """

    def __init__(self, path: Path, *, poll_interval: float = POLL_INTERVAL) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self._stamp = _stamp(path)
        self._entries: Mapping[str, bytes] = read_htpasswd(path)
        self.generation = 0

    def get(self, user: str) -> bytes | None:
        return self._entries.get(user)

    def __contains__(self, user: str) -> bool:
        return user in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    async def refresh(self) -> bool:
        """Re-read the file if it changed; return True when new users were loaded."""
        try:
            stamp = await asyncio.to_thread(_stamp, self.path)
        except OSError as exc:
            log.error("htpasswd_unreadable", path=str(self.path), error=exc.strerror)
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            entries = await asyncio.to_thread(read_htpasswd, self.path)
        except (OSError, UnicodeDecodeError, HtpasswdError) as exc:
            log.error("htpasswd_reload_failed", path=str(self.path), error=str(exc))
            return False
        self._entries = entries
        self.generation += 1
        log.info("htpasswd_reloaded", path=str(self.path), users=len(entries))
        return True

    async def watch(self) -> None:
        """Poll for changes until cancelled (run as a named background task)."""
        while True:
            await asyncio.sleep(self.poll_interval)
            await self.refresh()
