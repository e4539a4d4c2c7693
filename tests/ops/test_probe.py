"""Upstream probes: `registry-gateway probe` and the probe_interval gauge, on real components.

A htpasswd registry (Basic) and a token-mode registry (Bearer, real token server) are probed
with right, wrong and Vault-held (real OpenBao) credentials. The gauge test rotates the
password upstream only, then in Vault, and watches registry_gateway_upstream_probe_success.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.components import client as components_client
from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.gateway_process import REPO_ROOT, GatewayProcess
from tests.vault.openbao_setup import create_token, unique_path, write_secret
from tests.vault.pulls import assert_no_secrets, metric

INTERVAL = 1.0
WRONG = "not-the-password"


def run_probe(config: dict[str, Any], tmp_path: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """`python -m gateway probe --config FILE` on this checkout; (exit code, stdout, stderr)."""
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_GATEWAY")}
    process_env.update(env, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "probe", "--config", str(path)],
        capture_output=True,
        text=True,
        env=process_env,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def lines_by_upstream(stdout: str) -> dict[str, str]:
    return {line.split(": ", 1)[0]: line for line in stdout.splitlines()}


def basic(registry: Registry, password_env: str) -> dict[str, Any]:
    return {"username": registry.username, "password_env": password_env}


def upstream(registry: Registry, credentials: dict[str, Any] | None) -> dict[str, Any]:
    return {"url": registry.url, "credentials": credentials}


def test_probe_command_reports_each_upstream_and_fails_on_any(
    registry_htpasswd: Registry, registry_token: Registry, openbao: OpenBao, tmp_path: Path
) -> None:
    """One line per upstream: right, Vault-held creds pass; wrong or missing ones fail; exit 1."""
    client = openbao.client()
    good_h, good_t, bad_t = unique_path("probe-h"), unique_path("probe-t"), unique_path("probe-x")
    write_secret(client, good_h, {"username": "alice", "password": registry_htpasswd.password})
    write_secret(client, good_t, {"username": "alice", "password": registry_token.password})
    write_secret(client, bad_t, {"username": "alice", "password": WRONG})
    h, t = registry_htpasswd, registry_token
    upstreams = {
        "basic-right.test": upstream(h, basic(h, "H")),
        "basic-wrong.test": upstream(h, basic(h, "BAD")),
        "basic-none.test": upstream(h, None),
        "basic-vault.test": upstream(h, {"vault": {"path": good_h}}),
        "token-right.test": upstream(t, basic(t, "T")),
        "token-wrong.test": upstream(t, basic(t, "BAD")),
        "token-vault.test": upstream(t, {"vault": {"path": good_t}}),
        "token-vault-wrong.test": upstream(t, {"vault": {"path": bad_t}}),
        "gone.test": {"url": "http://127.0.0.1:9"},
    }
    config = {"upstreams": upstreams, "vault": {"url": openbao.url, "timeout": 2}}
    env = {
        "H": registry_htpasswd.password,
        "T": registry_token.password,
        "BAD": WRONG,
        "VAULT_TOKEN": create_token(client),
    }
    issued_before = registry_token.token_count()

    code, stdout, stderr = run_probe(config, tmp_path, env)

    lines = lines_by_upstream(stdout)
    assert sorted(lines) == sorted(upstreams), stdout
    for key in ("basic-right.test", "basic-vault.test"):
        assert ": ok: GET /v2/ 200, basic credentials" in lines[key], lines[key]
    for key in ("token-right.test", "token-vault.test"):
        assert ": ok: GET /v2/ 200, bearer token issued" in lines[key], lines[key]
    assert "FAILED: GET /v2/ 401: credentials refused" in lines["basic-wrong.test"]
    assert "FAILED: GET /v2/ 401: the upstream wants credentials" in lines["basic-none.test"]
    for key in ("token-wrong.test", "token-vault-wrong.test"):
        assert "FAILED: authentication refused: the upstream token service refused" in lines[key]
    assert "FAILED: unreachable" in lines["gone.test"]
    assert code == 1
    # Like docker login: tokens with no repository scope, so nothing was pulled.
    issued = (registry_token.count_file.read_text().splitlines())[issued_before:]
    assert len(issued) == 2 and all(line.split(" ", 1)[1] == "" for line in issued), issued
    for secret in (registry_htpasswd.password, registry_token.password, WRONG, env["VAULT_TOKEN"]):
        assert secret not in stdout + stderr


def test_probe_command_exits_0_when_every_upstream_passes(
    registry_htpasswd: Registry, registry_open: Registry, tmp_path: Path
) -> None:
    """All upstreams reachable and authenticated (or anonymous and open): exit 0."""
    config = {
        "upstreams": {
            "open.test": {"url": registry_open.url},
            "basic.test": upstream(registry_htpasswd, basic(registry_htpasswd, "H")),
        }
    }
    code, stdout, _ = run_probe(config, tmp_path, {"H": registry_htpasswd.password})
    lines = lines_by_upstream(stdout)
    assert "open.test: ok: GET /v2/ 200, anonymous" in lines["open.test"]
    assert code == 0, stdout


@pytest.fixture
def own_openbao(tmp_path: Path) -> Iterator[OpenBao]:
    with OpenBao.start(tmp_path / "openbao") as server:
        yield server


def wait_for(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until check() held; fails past timeout."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "condition not reached in time"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize("mode", ["htpasswd", "token"])
def test_probe_gauge_follows_upstream_rotation_then_vault(
    mode: str, own_openbao: OpenBao, tmp_path: Path
) -> None:
    """Password rotated upstream only: gauge 0 within one interval; new one in Vault: back to 1."""
    with Registry.start(tmp_path / "registry", mode) as registry:  # type: ignore[arg-type]
        path = unique_path("rotating")
        client = own_openbao.client()
        write_secret(client, path, {"username": "alice", "password": registry.password})
        config = {
            "upstreams": {
                "rotating.test": {
                    "url": registry.url,
                    "credentials": {"vault": {"path": path}},
                    "probe_interval": INTERVAL,
                }
            },
            # A long cache_ttl: only the re-read on refusal can pick up the new password.
            "vault": {"url": own_openbao.url, "cache_ttl": 600, "timeout": 2},
        }
        gateway = GatewayProcess.start(
            tmp_path / "gateway", config, env={"VAULT_TOKEN": create_token(client)}
        )
        try:
            name = "registry_gateway_upstream_probe_success"

            def gauge() -> float:
                return metric(gateway, name, upstream="rotating.test")

            def has_gauge() -> bool:
                return f'{name}{{upstream="rotating.test"}} 1.0' in metrics_text(gateway)

            wait_for(has_gauge, 10)
            old = registry.password
            registry.set_password("rotated-" + os.urandom(6).hex())
            took = wait_for(lambda: gauge() == 0.0, INTERVAL + 2.0)
            print(f"\n{mode}: gauge 0 {took:.2f}s after the upstream-only rotation")

            write_secret(client, path, {"username": "alice", "password": registry.password})
            took = wait_for(lambda: gauge() == 1.0, INTERVAL + 2.0)
            print(f"{mode}: gauge 1 {took:.2f}s after Vault got the new password")

            # Probes are not pulls: no caller request or upstream pull request was counted.
            assert metric(gateway, "registry_gateway_upstream_requests_total") == 0
            events = [line["event"] for line in gateway.log_lines()]
            assert "upstream_probe_failed" in events and "upstream_probe_recovered" in events
        finally:
            gateway.stop()
        assert_no_secrets(gateway, [old, registry.password])


def metrics_text(gateway: GatewayProcess) -> str:
    return components_client.send(f"{gateway.url}/metrics").body.decode()
