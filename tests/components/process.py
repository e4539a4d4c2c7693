"""One child process of a component: started with its output in a log file, stopped by PID.

Each component module (registry, tokenserver, containerd, openbao) owns a ManagedProcess and
decides when it is ready; this module owns the lifecycle that is the same for all of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40


class ComponentError(RuntimeError):
    """A real component could not be found, started or driven."""


def require_binary(name: str, *, also_look_in: Sequence[Path] = ()) -> str:
    """The absolute path of an executable, or a ComponentError saying how to get it.

    Tests must fail (not skip) when a component is missing, so CI cannot go green without it.
    """
    for directory in also_look_in:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ComponentError(
            f"required binary {name!r} not found on PATH; run .ci/install-system.sh "
            "(Debian packages) or install the Python test extras"
        )
    return found


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "<no log file>"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """A child process whose stdout and stderr go to one log file."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Self:
        # Append: a restarted component keeps the previous run's lines in the same file.
        log: IO[bytes] = log_path.open("ab")
        try:
            log.write(f"==> starting {' '.join(argv)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                # Its own session: a Ctrl-C on pytest must not kill it before teardown runs.
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own descriptor
        return cls(name, popen, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    def startup_error(self, reason: str) -> ComponentError:
        """An error naming the process, its exit status and its log tail."""
        status = self.popen.poll()
        state = "still running" if status is None else f"exited with {status}"
        return ComponentError(
            f"{self.name} (pid {self.pid}) failed to start: {reason}; {state}; "
            f"log {self.log_path}:\n{self.tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait, then SIGKILL this PID only; idempotent."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)


def python_module_argv(module: str, *args: str) -> list[str]:
    """argv running `python -m module` with the interpreter running the tests."""
    return [sys.executable, "-m", module, *args]


class Stoppable:
    """Context-manager support for components that have a stop() method."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
