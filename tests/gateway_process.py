"""The gateway under test as a real process: ``python -m gateway serve`` on a free port.

Real clients (skopeo, ctr, curl, Prometheus) talk to it over loopback exactly as users do.
The config is written as YAML from a dict; logs go to a file the tests can read.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import yaml

from tests.components.ports import free_port, wait_for_http
from tests.components.process import ManagedProcess, Stoppable

REPO_ROOT = Path(__file__).resolve().parent.parent


class GatewayProcess(Stoppable):
    """A running gateway: ``url``, ``host`` (host:port), ``log_lines()``, ``stop()``."""

    def __init__(self, process: ManagedProcess, port: int, workdir: Path, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.workdir = workdir
        self.log_path = log_path
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"

    @classmethod
    def start(
        cls,
        workdir: Path,
        config: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> Self:
        """Write ``config`` (``listen`` is filled in) and start the gateway; wait for /healthz."""
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        full = {"listen": f"127.0.0.1:{port}", "log": {"format": "json", "level": "info"}}
        full.update(config)
        # The gateway caches by default: under the test's workdir, never the machine's cache dir.
        cache = dict(full.get("cache") or {})
        cache.setdefault("dir", str(workdir / "cache"))
        full["cache"] = cache
        config_path = workdir / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(dict(full), sort_keys=False))
        log_path = workdir / "gateway.log"
        process_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_GATEWAY")}
        process_env.update(env or {})
        # Run the checkout under test, whatever `pip install -e` last pointed site-packages at.
        # An explicit PYTHONPATH (bench --gateway-ref) still comes first.
        process_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [process_env.get("PYTHONPATH", ""), str(REPO_ROOT)])
        )
        process = ManagedProcess.spawn(
            "registry-gateway",
            [sys.executable, "-m", "gateway", "serve", "--config", str(config_path)],
            log_path=log_path,
            cwd=workdir,
            env=process_env,
        )
        gateway = cls(process, port, workdir, log_path)
        try:
            wait_for_http(f"{gateway.url}/healthz", timeout=20.0, alive=process.alive)
        except Exception as exc:
            process.stop()
            raise process.startup_error(f"gateway did not become healthy: {exc}") from exc
        return gateway

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (non-JSON lines fail the test: logs must be JSON).

        Lines starting with ``==> `` are the harness's own start markers.
        """
        return [
            json.loads(line)
            for line in self.log_text().splitlines()
            if line.strip() and not line.startswith("==> ")
        ]

    def signal(self, signum: int = signal.SIGTERM) -> None:
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        self.process.stop()
