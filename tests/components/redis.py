"""A real Redis (Debian ``redis-server``) on a free loopback port, no persistence.

`Redis.start(workdir)`; `stop()` and `start_again()` act on that PID and keep the port, so a
test can take Redis away under running gateways and bring it back.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.components.ports import LOOPBACK, free_port, wait_until
from tests.components.process import ManagedProcess, Stoppable, require_binary

STARTUP_TIMEOUT = 15.0


def ping(port: int) -> bool:
    """Whether a Redis answers on ``port`` (a NOAUTH error counts: it is up)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class Redis(Stoppable):
    def __init__(self, workdir: Path, port: int, password: str | None = None) -> None:
        self.workdir = workdir
        self.port = port
        self.password = password
        self.url = f"redis://{LOOPBACK}:{port}/0"
        self._process: ManagedProcess | None = None

    @classmethod
    def start(cls, workdir: Path, *, password: str | None = None) -> Redis:
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir, free_port(), password)
        try:
            server.start_again()
        except BaseException:
            server.stop()
            raise
        return server

    def start_again(self) -> None:
        argv = [
            require_binary("redis-server"), "--bind", LOOPBACK, "--port", str(self.port),
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            "--protected-mode", "yes",
            *(["--requirepass", self.password] if self.password else []),
        ]  # fmt: skip
        self._process = ManagedProcess.spawn(
            "redis-server", argv, log_path=self.workdir / "redis.log", cwd=self.workdir
        )
        process = self._process
        if not wait_until(lambda: ping(self.port), timeout=STARTUP_TIMEOUT, alive=process.alive):
            raise process.startup_error("no PONG")

    def alive(self) -> bool:
        return self._process is not None and self._process.alive()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
