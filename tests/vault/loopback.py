"""Loopback stand-ins for what no real component does on demand.

- ``ThreadedApp`` serves a small aiohttp app from its own thread and event loop, so blocking
  test code (urllib, process starts) never stalls it while OpenBao calls it back.
- ``SilentListener`` accepts TCP connections (the kernel completes the handshake) and never
  answers: a hung Vault.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Self

from aiohttp import web

from tests.components.ports import LOOPBACK, free_port


class ThreadedApp:
    """An aiohttp app on 127.0.0.1:<free port>, served from a background thread."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class SilentListener:
    """A listening socket nobody reads from: connections open, requests never get an answer."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((LOOPBACK, 0))
        self._socket.listen(128)
        self.port: int = self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._socket.close()
