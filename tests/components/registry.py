"""A real distribution registry (Debian `docker-registry`, distribution 2.8) on loopback.

`Registry.start(workdir, auth)` runs `docker-registry serve config.yml` with filesystem storage
under `workdir` and deletes enabled, in one of three auth modes:

- `None`: open.
- `"htpasswd"`: a bcrypt htpasswd file; the registry challenges with `Basic`.
- `"token"`: also runs tests.components.tokenserver as the `auth.token` realm; the registry
  challenges with `Bearer` and verifies the tokens' `x5c` against its `rootcertbundle`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

import bcrypt
import yaml

from tests.components.ports import LOOPBACK, free_port, wait_for_http
from tests.components.process import (
    ComponentError,
    ManagedProcess,
    Stoppable,
    python_module_argv,
    require_binary,
)
from tests.components.tokenserver import issued_count, write_signing_identity

AuthMode = Literal[None, "htpasswd", "token"]

STARTUP_TIMEOUT = 20.0
DEFAULT_TOKEN_ISSUER = "registry-gateway-tests-issuer"
DEFAULT_TOKEN_SERVICE = "registry-gateway-tests-registry"


def htpasswd_line(username: str, password: str) -> str:
    """One `htpasswd -B` line; distribution 2.8 accepts only bcrypt entries."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{username}:{hashed}\n"


def registry_config(
    *,
    port: int,
    storage_dir: Path,
    auth: dict[str, object] | None,
) -> dict[str, object]:
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir)},
            "delete": {"enabled": True},
        },
        "http": {
            "addr": f"{LOOPBACK}:{port}",
            # Signs upload state; unset, distribution makes one up and logs a warning each start.
            "secret": secrets.token_hex(16),
        },
    }
    if auth is not None:
        config["auth"] = auth
    return config


def registry_env() -> dict[str, str]:
    # REGISTRY_* variables override config.yml keys; a stray one must not change the setup.
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


class Registry(Stoppable):
    """A running docker-registry, plus its token server in token mode.

    Passwords: distribution 2.8 re-reads the htpasswd file whenever its mtime changes (its
    htpasswd access controller stats the file on every authenticated request), so in htpasswd
    mode `set_password(new)` only rewrites the file, atomically and with a guaranteed new
    mtime, and the running process picks it up on the next request: no restart, no dropped
    connections. In token mode the token server holds the password, so `set_password`
    restarts the token server (same port); the registry never sees passwords there.
    `restart()` restarts the registry itself on the same port and data dir.
    """

    def __init__(
        self,
        *,
        workdir: Path,
        auth: AuthMode,
        port: int,
        username: str,
        password: str,
        token_issuer: str,
        token_service: str,
    ) -> None:
        self.workdir = workdir
        self.auth: AuthMode = auth
        self.port = port
        self.username = username
        self.password = password
        self.token_issuer = token_issuer
        self.token_service = token_service
        self.token_port: int | None = None
        self._registry: ManagedProcess | None = None
        self._tokenserver: ManagedProcess | None = None

    @classmethod
    def start(
        cls,
        workdir: Path,
        auth: AuthMode = None,
        *,
        username: str = "alice",
        password: str | None = None,
        token_issuer: str = DEFAULT_TOKEN_ISSUER,
        token_service: str = DEFAULT_TOKEN_SERVICE,
    ) -> Registry:
        workdir.mkdir(parents=True, exist_ok=True)
        registry = cls(
            workdir=workdir,
            auth=auth,
            port=free_port(),
            username=username,
            password=password if password is not None else secrets.token_urlsafe(12),
            token_issuer=token_issuer,
            token_service=token_service,
        )
        try:
            if auth == "token":
                registry.token_port = free_port()
                write_signing_identity(workdir, token_issuer)
                registry._start_tokenserver()
            elif auth == "htpasswd":
                registry._write_htpasswd()
            registry._write_config()
            registry._start_registry()
        except BaseException:
            registry.stop()
            raise
        return registry

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def token_url(self) -> str | None:
        if self.token_port is None:
            return None
        return f"http://{LOOPBACK}:{self.token_port}/token"

    @property
    def storage_dir(self) -> Path:
        return self.workdir / "storage"

    @property
    def count_file(self) -> Path:
        return self.workdir / "token-count.log"

    @property
    def htpasswd_path(self) -> Path:
        return self.workdir / "htpasswd"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def credentials(self) -> tuple[str, str] | None:
        """(username, password) when the registry wants credentials, else None."""
        return None if self.auth is None else (self.username, self.password)

    def token_count(self) -> int:
        """How many tokens the token server has issued so far (0 outside token mode)."""
        return issued_count(self.count_file)

    def set_password(self, new: str) -> None:
        """Change the password the registry (htpasswd) or the token server (token) accepts."""
        if self.auth is None:
            raise ComponentError("set_password needs an authenticated registry")
        self.password = new
        if self.auth == "htpasswd":
            self._write_htpasswd()
        else:
            self._stop_tokenserver()
            self._start_tokenserver()

    def restart(self) -> None:
        """Restart the registry process (not the token server) on the same port and data."""
        self._stop_registry()
        self._start_registry()

    def stop(self) -> None:
        self._stop_registry()
        self._stop_tokenserver()

    def _auth_config(self) -> dict[str, object] | None:
        if self.auth == "htpasswd":
            return {
                "htpasswd": {"realm": "registry-gateway-tests", "path": str(self.htpasswd_path)}
            }
        if self.auth == "token":
            return {
                "token": {
                    "realm": self.token_url,
                    "service": self.token_service,
                    "issuer": self.token_issuer,
                    "rootcertbundle": str(self.workdir / "token-signing.crt"),
                }
            }
        return None

    def _write_config(self) -> None:
        config = registry_config(
            port=self.port, storage_dir=self.storage_dir, auth=self._auth_config()
        )
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _write_htpasswd(self) -> None:
        previous = self.htpasswd_path.stat().st_mtime_ns if self.htpasswd_path.exists() else None
        # Write-then-rename so the registry never reads a half-written file.
        tmp = self.htpasswd_path.with_suffix(".tmp")
        tmp.write_text(htpasswd_line(self.username, self.password))
        if previous is not None and tmp.stat().st_mtime_ns == previous:
            # distribution reloads only on an mtime change; coarse kernel timestamps can
            # repeat within a few milliseconds.
            os.utime(tmp, ns=(previous + 1_000_000_000, previous + 1_000_000_000))
        tmp.replace(self.htpasswd_path)

    def _start_registry(self) -> None:
        binary = require_binary("docker-registry")
        process = ManagedProcess.spawn(
            "docker-registry",
            [binary, "serve", str(self.config_path)],
            log_path=self.log_path,
            cwd=self.workdir,
            env=registry_env(),
        )
        self._registry = process
        try:
            wait_for_http(f"{self.url}/v2/", timeout=STARTUP_TIMEOUT, alive=process.alive)
        except TimeoutError as exc:
            raise process.startup_error(str(exc)) from exc

    def _start_tokenserver(self) -> None:
        assert self.token_port is not None
        argv = python_module_argv(
            "tests.components.tokenserver",
            *("--port", str(self.token_port)),
            *("--key", str(self.workdir / "token-signing.key")),
            *("--cert", str(self.workdir / "token-signing.crt")),
            *("--issuer", self.token_issuer),
            *("--service", self.token_service),
            *("--htpasswd-user", self.username),
            f"--htpasswd-password={self.password}",  # a password may start with "-"
            *("--count-file", str(self.count_file)),
        )
        process = ManagedProcess.spawn(
            "tokenserver",
            argv,
            log_path=self.workdir / "tokenserver.log",
            cwd=repo_root(),
        )
        self._tokenserver = process
        try:
            wait_for_http(
                f"http://{LOOPBACK}:{self.token_port}/count",
                timeout=STARTUP_TIMEOUT,
                ok_statuses={200},
                alive=process.alive,
            )
        except TimeoutError as exc:
            raise process.startup_error(str(exc)) from exc

    def _stop_registry(self) -> None:
        if self._registry is not None:
            self._registry.stop()
            self._registry = None

    def _stop_tokenserver(self) -> None:
        if self._tokenserver is not None:
            self._tokenserver.stop()
            self._tokenserver = None


def repo_root() -> Path:
    """The checkout root, so `python -m tests.components.tokenserver` imports from any cwd."""
    return Path(__file__).resolve().parents[2]
