"""nginx ``proxy_pass`` in front of the same registry: what a plain reverse proxy costs.

The peer the gateway's request path is held against. One worker process, like the gateway's
one event loop; keep-alive to the upstream (``keepalive``, HTTP/1.1, no ``Connection``
header) as the gateway's connection pool does; an access log line per request, as the gateway
writes one. The caller's ``Authorization`` passes through (nginx cannot fetch tokens), so the
bench hands nginx the same token the direct run uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.components.ports import LOOPBACK, free_port, wait_for_http
from tests.components.process import ManagedProcess, require_binary

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream registry {{ server {upstream}; keepalive 32; }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """A running nginx relaying to ``upstream`` (``host:port``); stop() ends it by PID."""

    process: ManagedProcess
    url: str

    @classmethod
    def start(cls, workdir: Path, upstream: str) -> Nginx:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(dir=workdir, upstream=upstream, listen=f"{LOOPBACK}:{port}")
        )
        argv = [require_binary("nginx", also_look_in=[Path("/usr/sbin")]), "-c", str(conf)]
        process = ManagedProcess.spawn("nginx", argv, log_path=workdir / "nginx.log")
        url = f"http://{LOOPBACK}:{port}"
        try:
            wait_for_http(f"{url}/v2/", ok_statuses=(200, 401), alive=process.alive)
        except TimeoutError as exc:
            process.stop()
            raise process.startup_error(str(exc)) from exc
        return cls(process, url)

    def stop(self) -> None:
        self.process.stop()
