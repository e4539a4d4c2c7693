"""/healthz, /readyz and /metrics of a real gateway process, on the main and metrics listeners."""

from __future__ import annotations

import json
from pathlib import Path

from tests.components import client
from tests.components.ports import free_port, wait_until
from tests.gateway_process import GatewayProcess

HUB = {"docker.io": {"url": "https://registry-1.docker.io"}}


def test_healthy_gateway_is_live_and_ready(tmp_path: Path) -> None:
    """/healthz 200, /readyz 200 naming its checks, both with a request id."""
    with GatewayProcess.start(tmp_path, {"upstreams": HUB}) as gateway:
        live = client.send(f"{gateway.url}/healthz")
        ready = client.send(f"{gateway.url}/readyz")
    assert (live.status, json.loads(live.body)) == (200, {"status": "ok"})
    assert ready.status == 200
    assert json.loads(ready.body) == {
        "status": "ready",
        "checks": {"draining": "ok", "cache": "ok"},  # the embedded default caches
    }
    assert live.headers["X-Request-ID"] and ready.headers["X-Request-ID"]


def test_separate_metrics_listener_serves_metrics_and_health(tmp_path: Path) -> None:
    """With metrics.listen set, /metrics moves there (404 on the pull port), next to health."""
    metrics = f"127.0.0.1:{free_port()}"
    config = {"upstreams": HUB, "metrics": {"path": "/prom", "listen": metrics}}
    with GatewayProcess.start(tmp_path, config) as gateway:
        assert client.send(f"{gateway.url}/prom").status == 404
        exposition = client.send(f"http://{metrics}/prom")
        assert exposition.status == 200
        assert exposition.headers["Content-Type"].startswith("text/plain")
        assert b"registry_gateway_requests_total" in exposition.body
        assert client.send(f"http://{metrics}/healthz").status == 200
        assert client.send(f"http://{metrics}/readyz").status == 200


def test_vault_not_logged_in_makes_the_gateway_unready(tmp_path: Path) -> None:
    """With Vault unreachable /readyz is 503 naming the vault check; liveness stays 200."""
    config = {
        "upstreams": {
            **HUB,
            "ghcr.io": {"url": "https://ghcr.io", "credentials": {"vault": {"path": "r/ghcr"}}},
        },
        "vault": {
            # Nothing listens there: every login attempt fails.
            "url": f"http://127.0.0.1:{free_port()}",
            "timeout": 1,
            "auth": {"method": "token", "token_env": "OPS_VAULT_TOKEN"},
        },
    }
    env = {"OPS_VAULT_TOKEN": "ops-health-not-a-real-token"}
    with GatewayProcess.start(tmp_path, config, env=env) as gateway:
        replies: list[client.Response] = []

        def unready() -> bool:
            replies.append(client.send(f"{gateway.url}/readyz"))
            return replies[-1].status == 503

        assert wait_until(unready, timeout=15), replies[-1].body
        report = json.loads(replies[-1].body)
        live = client.send(f"{gateway.url}/healthz")
        metrics = client.send(f"{gateway.url}/metrics").body.decode()
    assert report["status"] == "not ready"
    assert report["checks"]["draining"] == "ok"
    assert report["checks"]["vault"] != "ok" and report["checks"]["vault"]
    assert live.status == 200
    assert "registry_gateway_ready 0.0" in metrics
    assert "ops-health-not-a-real-token" not in gateway.log_text()
