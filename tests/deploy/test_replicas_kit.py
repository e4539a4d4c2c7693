"""The scale-out kit: docker-compose.replicas.yml and config/kubernetes/replicas.yaml agree."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.components.process import require_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.replicas.yml"
KUBE = REPO_ROOT / "config" / "kubernetes" / "replicas.yaml"


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def mounted(service: dict[str, Any], target: str) -> Path:
    for volume in service["volumes"]:
        source, container_path, *mode = volume.split(":")
        if container_path == target:
            assert mode == ["ro"]
            return REPO_ROOT / source
    raise AssertionError(f"nothing mounted at {target}")


def kube(kind: str) -> dict[str, Any]:
    [found] = [d for d in yaml.safe_load_all(KUBE.read_text()) if d and d["kind"] == kind]
    return found


def test_compose_runs_three_replicas_of_one_config_behind_the_balancer() -> None:
    """gateway-1..3 mount the same config; haproxy balances over exactly those three."""
    services = compose_services()
    gateways = sorted(name for name in services if name.startswith("gateway-"))
    assert gateways == ["gateway-1", "gateway-2", "gateway-3"]
    configs = {mounted(services[g], "/etc/registry-gateway/gateway.yaml") for g in gateways}
    assert len(configs) == 1
    haproxy = mounted(services["balancer"], "/usr/local/etc/haproxy/haproxy.cfg").read_text()
    servers = [
        line.split()[2] for line in haproxy.splitlines() if line.strip().startswith("server")
    ]
    assert servers == [f"{g}:5000" for g in gateways]


def test_compose_haproxy_config_passes_haproxy_check() -> None:
    """`haproxy -c` (the real binary) accepts the balancer's config."""
    services = compose_services()
    config = mounted(services["balancer"], "/usr/local/etc/haproxy/haproxy.cfg")
    result = subprocess.run(
        [require_binary("haproxy"), "-c", "-f", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_gateways_reach_the_bucket_and_redis_the_stack_provides() -> None:
    """S3 endpoint, bucket, keys and the Redis URL and password match the other services."""
    services = compose_services()
    gateway = services["gateway-1"]
    config = yaml.safe_load(mounted(gateway, "/etc/registry-gateway/gateway.yaml").read_text())
    env = gateway["environment"]
    s3 = config["cache"]["s3"]
    assert urlsplit(s3["endpoint"]).hostname == "seaweedfs"
    assert f"-s3.port={urlsplit(s3['endpoint']).port}" in services["seaweedfs"]["command"]
    init = services["seaweedfs-init"]["command"][0]
    assert f"s3.bucket.create -name {s3['bucket']}" in init
    identities = json.loads(mounted(services["seaweedfs"], "/etc/seaweedfs/s3.json").read_text())[
        "identities"
    ]
    keys = {(c["accessKey"], c["secretKey"]) for i in identities for c in i["credentials"]}
    creds = s3["credentials"]
    assert (env[creds["access_key_id_env"]], env[creds["secret_access_key_env"]]) in keys
    redis = config["cluster"]["redis"]
    assert urlsplit(redis["url"]).hostname == "redis"
    command = services["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == env[redis["password_env"]]


def test_kubernetes_replicas_have_a_budget_and_an_autoscaler() -> None:
    """3+ replicas; the PodDisruptionBudget selects its pods, the HPA scales it from 3."""
    deployment = kube("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 3
    budget = kube("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget.get("maxUnavailable", 0) >= 1 or budget["minAvailable"] < 3
    hpa = kube("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] >= 3 and hpa["maxReplicas"] > hpa["minReplicas"]


def test_kubernetes_secrets_feed_every_variable_the_config_names(tmp_path: Path) -> None:
    """S3 keys and the Redis password come from Secrets, and check-config accepts the config."""
    text = kube("ConfigMap")["data"]["gateway.yaml"]
    config = yaml.safe_load(text)
    named = {
        config["cache"]["s3"]["credentials"]["access_key_id_env"],
        config["cache"]["s3"]["credentials"]["secret_access_key_env"],
        config["cluster"]["redis"]["password_env"],
    }
    [container] = kube("Deployment")["spec"]["template"]["spec"]["containers"]
    from_secrets = {e["name"] for e in container["env"] if "secretKeyRef" in e["valueFrom"]}
    assert named <= from_secrets
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_GATEWAY")}
    env.update({name: "stand-in-secret" for name in named})
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, shlex.join(result.args) + result.stdout + result.stderr
