"""The docker-compose demo stack: services wired together consistently, configs that validate."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bcrypt
import pytest
import yaml

from tests.deploy.dockerfile import parse_stages

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# YAML files under config/ that are not gateway configurations (the gateway configs embedded
# in Kubernetes ConfigMaps are checked by test_kubernetes.py).
NOT_GATEWAY_CONFIGS = {"config/compose/prometheus.yml"}
NOT_GATEWAY_CONFIG_DIRS = ("config/kubernetes/", "config/prometheus/")


def _gateway_config_files() -> list[str]:
    files = sorted(
        p.relative_to(REPO_ROOT).as_posix()
        for pattern in ("*.yaml", "*.yml")
        for p in (REPO_ROOT / "config").rglob(pattern)
    )
    return [
        f
        for f in files
        if f not in NOT_GATEWAY_CONFIGS and not f.startswith(NOT_GATEWAY_CONFIG_DIRS)
    ]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def _bind_mount(service: dict[str, Any], target: str) -> Path:
    """The repository file mounted at `target`, checked to be read-only."""
    for volume in service.get("volumes", []):
        source, container_path, *mode = volume.split(":")
        if container_path == target:
            assert mode == ["ro"], f"{volume}: config mounts are read-only"
            assert source.startswith("./"), f"{volume}: not a repository path"
            return REPO_ROOT / source
    raise AssertionError(f"nothing mounted at {target}")


def _published(service: dict[str, Any]) -> dict[int, int]:
    """container port → host port, from short-syntax `ports`."""
    mapping = {}
    for entry in service.get("ports", []):
        *_, host, container = str(entry).split(":")
        mapping[int(container)] = int(host)
    return mapping


def _port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def _init_commands(services: dict[str, Any]) -> list[list[str]]:
    script = services["openbao-init"]["command"][0]
    return [shlex.split(line) for line in script.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def gateway_config(services: dict[str, Any]) -> dict[str, Any]:
    config_path = _bind_mount(services["gateway"], "/etc/registry-gateway/gateway.yaml")
    return yaml.safe_load(config_path.read_text())


def test_stack_has_the_expected_services(services: dict[str, Any]) -> None:
    """gateway, registry, openbao, openbao-init and prometheus are all defined."""
    assert {"gateway", "registry", "openbao", "openbao-init", "prometheus"} <= set(services)


def test_images_are_pinned(services: dict[str, Any]) -> None:
    """Every pulled image names a version tag, never `latest` or a bare major."""
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest", f"{name}: {image} is not pinned"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not a full version"


def test_gateway_is_built_here_and_hardened(services: dict[str, Any]) -> None:
    """The gateway builds from the repo, runs read-only with a /tmp tmpfs and a healthcheck."""
    gateway = services["gateway"]
    assert gateway["build"] == "."
    assert gateway["read_only"] is True
    assert "/tmp" in gateway["tmpfs"]
    test = gateway["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:5000/healthz" in test[3]
    compile(test[3], "<healthcheck>", "exec")


def test_gateway_mounts_the_path_the_image_serves(services: dict[str, Any]) -> None:
    """The mounted config exists in the repo and lands where the image's CMD reads it."""
    cmd = parse_stages((REPO_ROOT / "Dockerfile").read_text())[-1].last("CMD")
    assert cmd is not None
    image_config = cmd.exec_form()[cmd.exec_form().index("--config") + 1]
    assert _bind_mount(services["gateway"], image_config).is_file()


def test_gateway_waits_for_its_dependencies(services: dict[str, Any]) -> None:
    """The gateway starts after the registry and after the secret has been written."""
    depends_on = services["gateway"]["depends_on"]
    assert depends_on["openbao-init"]["condition"] == "service_completed_successfully"
    assert "registry" in depends_on
    assert services["openbao-init"]["depends_on"]["openbao"]["condition"] == "service_healthy"


def test_listen_port_is_the_published_port(
    services: dict[str, Any], gateway_config: dict[str, Any]
) -> None:
    """The port in the gateway config's `listen` is the container port published as 5000."""
    port = _port_of(gateway_config["listen"])
    assert _published(services["gateway"]) == {port: 5000}


def test_upstream_url_names_the_registry_service(
    services: dict[str, Any], gateway_config: dict[str, Any]
) -> None:
    """The `registry:5000` upstream points at the registry service on the port it listens on."""
    upstream = gateway_config["upstreams"]["registry:5000"]
    url = urlsplit(upstream["url"])
    assert url.hostname in services and url.hostname == "registry"
    registry_port = _port_of(services["registry"]["environment"]["REGISTRY_HTTP_ADDR"])
    assert url.port == registry_port == 5000
    assert gateway_config["routing"]["default"] in gateway_config["upstreams"]


def test_registry_htpasswd_accepts_the_secret_in_openbao(services: dict[str, Any]) -> None:
    """The mounted htpasswd holds a bcrypt entry that matches the password openbao-init writes."""
    registry = services["registry"]
    env = registry["environment"]
    assert env["REGISTRY_AUTH"] == "htpasswd"
    htpasswd = _bind_mount(registry, env["REGISTRY_AUTH_HTPASSWD_PATH"])
    entries = dict(line.split(":", 1) for line in htpasswd.read_text().split())
    put = next(c for c in _init_commands(services) if c[:3] == ["bao", "kv", "put"])
    secret = dict(field.split("=", 1) for field in put[4:])
    assert entries[secret["username"]].startswith("$2")
    assert bcrypt.checkpw(secret["password"].encode(), entries[secret["username"]].encode())


def test_openbao_init_writes_the_path_the_gateway_reads(
    services: dict[str, Any], gateway_config: dict[str, Any]
) -> None:
    """openbao-init puts the secret at the gateway's vault path in the KV v2 `secret` mount."""
    vault = gateway_config["vault"]
    credentials = gateway_config["upstreams"]["registry:5000"]["credentials"]["vault"]
    mount = credentials.get("mount", vault.get("kv_mount", "secret"))
    assert mount == "secret", "the dev server mounts KV v2 at secret/"
    assert vault.get("kv_version", 2) == 2
    put = next(c for c in _init_commands(services) if c[:3] == ["bao", "kv", "put"])
    assert put[3] == f"{mount}/{credentials['path']}"
    assert {field.split("=", 1)[0] for field in put[4:]} == {"username", "password"}


def test_openbao_init_waits_for_openbao(services: dict[str, Any]) -> None:
    """The one-shot init uses the OpenBao image, loops on `bao status`, then stops."""
    init, openbao = services["openbao-init"], services["openbao"]
    assert init["image"] == openbao["image"]
    assert init["entrypoint"][0] == "/bin/sh"
    first = _init_commands(services)[0]
    assert first[:3] == ["until", "bao", "status"]
    assert init.get("restart") == "no"


def test_vault_address_and_token_agree_across_services(
    services: dict[str, Any], gateway_config: dict[str, Any]
) -> None:
    """Gateway and openbao-init reach openbao:8200 with the dev root token the server is given."""
    openbao = services["openbao"]
    command = openbao["command"]
    assert command[:2] == ["server", "-dev"]
    root_token = next(a.split("=", 1)[1] for a in command if a.startswith("-dev-root-token-id="))
    assert openbao["environment"]["BAO_DEV_ROOT_TOKEN_ID"] == root_token
    listen_port = _port_of(openbao["environment"]["BAO_DEV_LISTEN_ADDRESS"])
    assert _published(openbao) == {listen_port: 8200}

    vault = gateway_config["vault"]
    init_env = services["openbao-init"]["environment"]
    for address in (vault["url"], init_env["BAO_ADDR"]):
        url = urlsplit(address)
        assert (url.hostname, url.port) == ("openbao", listen_port)
    assert vault["auth"]["method"] == "token"
    token_env = vault["auth"].get("token_env", "VAULT_TOKEN")
    assert services["gateway"]["environment"][token_env] == root_token
    assert init_env["BAO_TOKEN"] == root_token


def test_prometheus_scrapes_the_gateway_metrics_path(
    services: dict[str, Any], gateway_config: dict[str, Any]
) -> None:
    """Prometheus's scrape target and path are the gateway service, port and metrics.path."""
    prometheus_yml = _bind_mount(services["prometheus"], "/etc/prometheus/prometheus.yml")
    scrape = yaml.safe_load(prometheus_yml.read_text())["scrape_configs"]
    metrics = gateway_config.get("metrics") or {}
    assert metrics.get("listen") is None, "scrape target assumes metrics on the main listener"
    expected_target = f"gateway:{_port_of(gateway_config['listen'])}"
    jobs = [
        job
        for job in scrape
        if any(expected_target in group["targets"] for group in job["static_configs"])
    ]
    assert len(jobs) == 1
    assert jobs[0].get("metrics_path", "/metrics") == metrics.get("path", "/metrics")


def _referenced_env_names(node: Any) -> set[str]:
    """Environment variable names a config refers to (password_env, token_env, ...)."""
    if isinstance(node, dict):
        names = {v for k, v in node.items() if k.endswith("_env") and isinstance(v, str)}
        return names.union(*(_referenced_env_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_referenced_env_names(v) for v in node))
    return set()


def _with_stand_in_files(node: Any, directory: Path) -> Any:
    """A copy of a config whose referenced files (*_file, docker_config) are stand-ins."""
    if isinstance(node, list):
        return [_with_stand_in_files(v, directory) for v in node]
    if not isinstance(node, dict):
        return node
    copy = {}
    for key, value in node.items():
        if isinstance(value, str) and (key.endswith("_file") or key == "docker_config"):
            stand_in = directory / f"{len(list(directory.iterdir()))}-{Path(value).name}"
            stand_in.write_text('{"auths": {}}' if key == "docker_config" else "stand-in\n")
            copy[key] = str(stand_in)
        else:
            copy[key] = _with_stand_in_files(value, directory)
    return copy


def test_config_directory_has_gateway_configs() -> None:
    """The check-config sweep below covers the shipped examples, not an empty list."""
    assert {
        "config/gateway.yaml",
        "config/minimal.yaml",
        "config/multi-upstream.yaml",
        "config/compose/gateway.yaml",
    } <= set(_gateway_config_files())


@pytest.mark.parametrize("path", _gateway_config_files())
def test_config_file_passes_check_config(path: str, tmp_path: Path) -> None:
    """`registry-gateway check-config` accepts the file: exit 0 and a one-line summary."""
    config = yaml.safe_load((REPO_ROOT / path).read_text())
    env = {k: v for k, v in os.environ.items() if k != "REGISTRY_GATEWAY_CONFIG"}
    # Secrets are supplied at deploy time and check-config insists they are there: give it
    # stand-ins for every environment variable and file the example refers to. Only the
    # file paths change in the checked copy; every other key and value is the example's.
    env.update({name: "stand-in-secret" for name in _referenced_env_names(config)})
    if config.get("vault"):
        env.setdefault("VAULT_TOKEN", "stand-in-secret")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    checked = _with_stand_in_files(config, secrets)
    checked_path = path
    if checked != config:
        checked_path = str(tmp_path / Path(path).name)
        Path(checked_path).write_text(yaml.safe_dump(checked, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", checked_path],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}{result.stderr}"
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout


def test_prometheus_loads_the_repository_alert_rules(services: dict[str, Any]) -> None:
    """Compose Prometheus mounts config/prometheus/alerts.yml where its rule_files point."""
    prometheus = services["prometheus"]
    prometheus_yml = yaml.safe_load(
        _bind_mount(prometheus, "/etc/prometheus/prometheus.yml").read_text()
    )
    [rule_file] = prometheus_yml["rule_files"]
    assert _bind_mount(prometheus, rule_file) == REPO_ROOT / "config/prometheus/alerts.yml"


def test_compose_prometheus_config_passes_promtool(
    services: dict[str, Any], tmp_path: Path
) -> None:
    """`promtool check config` accepts the compose Prometheus config and its rules."""
    prometheus = services["prometheus"]
    config = yaml.safe_load(_bind_mount(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    # Point rule_files at the repository files the container would see at those paths.
    config["rule_files"] = [str(_bind_mount(prometheus, path)) for path in config["rule_files"]]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: run .ci/install-system.sh"
    result = subprocess.run(
        [promtool, "check", "config", str(checked)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gateway_stop_grace_outlasts_shutdown_grace(
    services: dict[str, Any], gateway_config: dict[str, Any]
) -> None:
    """`docker compose stop` waits longer than the gateway drains before it sends SIGKILL."""
    grace = services["gateway"]["stop_grace_period"]
    assert grace.endswith("s")
    assert int(grace[:-1]) >= gateway_config.get("shutdown_grace", 30) + 5
