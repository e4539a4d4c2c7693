"""A real load balancer (Debian ``haproxy``) on loopback, round-robin over gateway replicas.

`Balancer.start(workdir, backends)` writes a minimal HTTP config (one frontend on a free port,
one backend per ``host:port``, no health checks so a killed replica is noticed by the
request that hits it) and runs ``haproxy -db -f``; `stop()` acts on that PID only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.components.ports import LOOPBACK, free_port, wait_until
from tests.components.process import ManagedProcess, Stoppable, require_binary


def haproxy_config(port: int, backends: Sequence[str]) -> str:
    servers = "\n".join(f"    server r{i} {b}" for i, b in enumerate(backends))
    return f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    option forwardfor
frontend gateway
    bind {LOOPBACK}:{port}
    default_backend replicas
backend replicas
    balance roundrobin
{servers}
"""


class Balancer(Stoppable):
    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.host = f"{LOOPBACK}:{port}"
        self.url = f"http://{self.host}"
        self._process: ManagedProcess | None = None

    @classmethod
    def start(cls, workdir: Path, backends: Sequence[str]) -> Balancer:
        workdir.mkdir(parents=True, exist_ok=True)
        balancer = cls(workdir, free_port())
        config = workdir / "haproxy.cfg"
        config.write_text(haproxy_config(balancer.port, backends))
        process = balancer._process = ManagedProcess.spawn(
            "haproxy", [require_binary("haproxy"), "-db", "-f", str(config)],
            log_path=workdir / "haproxy.log", cwd=workdir,
        )  # fmt: skip

        def listening() -> bool:
            import socket

            try:
                socket.create_connection((LOOPBACK, balancer.port), timeout=1).close()
            except OSError:
                return False
            return True

        if not wait_until(listening, timeout=15, alive=process.alive):
            balancer.stop()
            raise process.startup_error("not listening")
        return balancer

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
