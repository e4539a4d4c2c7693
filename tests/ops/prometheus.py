"""A real Prometheus (Debian ``prometheus``) on loopback, scraping gateways every second.

`Prometheus.start(workdir, targets)` writes a config with one ``registry-gateway`` job, starts
``prometheus`` on a free port with its TSDB under ``workdir``, waits for ``/-/ready`` and for a
first successful scrape of every target, and is stopped by PID. PromQL goes over the HTTP API
(``/api/v1/query``), exactly as Grafana and alerting use it. A missing binary raises
ComponentError: the tests fail, they never skip.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.components.ports import LOOPBACK, free_port, wait_for_http, wait_until
from tests.components.process import ComponentError, ManagedProcess, Stoppable, require_binary

JOB = "registry-gateway"
SCRAPE_INTERVAL = 1.0
STARTUP_TIMEOUT = 30.0


class PromQLError(ComponentError):
    """Prometheus refused a query (parse or evaluation error)."""


class Prometheus(Stoppable):
    """A running Prometheus: ``url``, ``query()``, ``value()``, ``wait_for_value()``."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        self._process: ManagedProcess | None = None

    @classmethod
    def start(
        cls,
        workdir: Path,
        targets: Sequence[str],
        *,
        metrics_path: str = "/metrics",
        rule_files: Sequence[Path] = (),
    ) -> Prometheus:
        """Scrape ``targets`` (host:port) at ``metrics_path`` every second; load ``rule_files``."""
        binary = require_binary("prometheus")
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir, free_port())
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL:g}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL:g}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL:g}s",
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "metrics_path": metrics_path,
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        argv = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{server.port}",
            "--log.level=warn",
        ]
        server._process = ManagedProcess.spawn(
            "prometheus", argv, log_path=workdir / "prometheus.log", cwd=workdir
        )
        try:
            wait_for_http(
                f"{server.url}/-/ready",
                timeout=STARTUP_TIMEOUT,
                ok_statuses={200},
                alive=server._process.alive,
            )
            if not wait_until(
                lambda: server._all_targets_up(len(targets)),
                timeout=STARTUP_TIMEOUT,
                alive=server._process.alive,
            ):
                raise server._process.startup_error(f"targets never up: {server.targets()}")
        except BaseException:
            server.stop()
            raise
        return server

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a success, else PromQLError."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=10.0) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result vector (a scalar comes back as one unlabelled sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single sample ``expr`` evaluates to, or None when it selects nothing."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{expr} selects {len(result)} series: {result}")
        return float(result[0]["value"][1])

    def wait_for_value(self, expr: str, expected: float, timeout: float = 15.0) -> float | None:
        """Poll until ``expr`` equals ``expected``; return the last value seen either way."""
        seen: list[float | None] = [None]

        def reached() -> bool:
            seen[0] = self.value(expr)
            return seen[0] == expected

        wait_until(reached, timeout=timeout, interval=0.2)
        return seen[0]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 15.0) -> bool:
        return wait_until(condition, timeout=timeout, interval=0.2)

    def scrapes(self) -> float:
        """How many scrapes of the job Prometheus has recorded so far (all targets)."""
        return self.value(f'sum(count_over_time(up{{job="{JOB}"}}[1h]))') or 0.0

    def wait_for_next_scrape(self, timeout: float = 10.0) -> None:
        """Return once every target has been scraped again after this call."""
        before = self.scrapes()
        targets = len(self.targets())
        if not self.wait_for(lambda: self.scrapes() >= before + 2 * targets, timeout):
            raise ComponentError(f"no new scrape within {timeout:.0f}s: {self.targets()}")

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return active

    def _all_targets_up(self, count: int) -> bool:
        try:
            active = self.targets()
        except (PromQLError, OSError):
            return False
        return len(active) == count and all(t["health"] == "up" for t in active)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
