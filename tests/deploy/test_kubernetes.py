"""The Kubernetes manifests (config/kubernetes/): schema-valid offline, and consistent.

Built-in kinds are validated strictly against the Kubernetes JSON schemas that
``kubernetes-validate`` ships (no network); the Prometheus Operator kinds against the subset of
their CRD schema written here, and their rules with ``promtool``. The rest checks that the
pieces agree: ports, probes, config paths, the containerd hosts.toml the DaemonSet installs,
and the Vault Kubernetes auth wiring of the sidecar.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

import gateway
from tests.components.process import require_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = REPO_ROOT / "config" / "kubernetes"
ALERTS = REPO_ROOT / "config" / "prometheus" / "alerts.yml"
# The oldest release with native sidecars on by default, and the newest the schemas cover.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
FAKE_NODE_IP = "10.11.12.13"

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": _NAME,
        "namespace": _NAME,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
_DURATION = {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"}
# The fields these manifests use, from the Prometheus Operator CRDs (monitoring.coreos.com/v1).
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {
                        "type": "object",
                        "properties": {
                            "matchLabels": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            }
                        },
                        "additionalProperties": False,
                    },
                    "namespaceSelector": {
                        "type": "object",
                        "properties": {
                            "matchNames": {"type": "array", "items": {"type": "string"}},
                            "any": {"type": "boolean"},
                        },
                        "additionalProperties": False,
                    },
                    "jobLabel": {"type": "string"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": _DURATION,
                                "scrapeTimeout": _DURATION,
                            },
                            "additionalProperties": False,
                        },
                    },
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _DURATION,
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": _DURATION,
                                            "labels": {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            },
                                            "annotations": {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            },
                                        },
                                        "additionalProperties": False,
                                    },
                                },
                            },
                            "additionalProperties": False,
                        },
                    }
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
}


def load_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((path.name, document))
    return documents


DOCUMENTS = load_documents()


def doc_id(entry: tuple[str, dict[str, Any]]) -> str:
    path, document = entry
    return f"{path}:{document['kind']}/{document['metadata']['name']}"


def find(kind: str, name: str | None = None, file: str | None = None) -> dict[str, Any]:
    found = [
        d
        for path, d in DOCUMENTS
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (file is None or path == file)
    ]
    assert len(found) == 1, (kind, name, file, len(found))
    return found[0]


def gateway_config(configmap: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(configmap["data"]["gateway.yaml"])
    return loaded


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    everything = [*pod.get("initContainers", []), *pod["containers"]]
    [found] = [c for c in everything if c["name"] == name]
    return found


def named_ports(spec: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in spec.get("ports", [])}


def test_manifests_cover_the_three_deployments() -> None:
    """Node mirror (Deployment, Service, DaemonSet), sidecar Job, ServiceMonitor, PrometheusRule."""
    kinds = {(path, d["kind"]) for path, d in DOCUMENTS}
    assert {
        ("node-mirror.yaml", "Deployment"),
        ("node-mirror.yaml", "Service"),
        ("node-mirror.yaml", "DaemonSet"),
        ("sidecar.yaml", "Job"),
        ("sidecar.yaml", "ServiceAccount"),
        ("monitoring.yaml", "ServiceMonitor"),
        ("monitoring.yaml", "PrometheusRule"),
    } <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "entry", [e for e in DOCUMENTS if e[1]["kind"] not in CUSTOM_KINDS], ids=doc_id
)
def test_builtin_resource_is_schema_valid(entry: tuple[str, dict[str, Any]], version: str) -> None:
    """Strict validation against the shipped Kubernetes schema: no unknown or mistyped field."""
    kubernetes_validate.validate(entry[1], version, strict=True)


def test_validator_catches_a_misspelt_field() -> None:
    """The offline validator is strict: a typo in a container field is an error, not a warning."""
    deployment = find("Deployment", "registry-gateway")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    "entry", [e for e in DOCUMENTS if e[1]["kind"] in CUSTOM_KINDS], ids=doc_id
)
def test_custom_resource_matches_its_crd_schema(entry: tuple[str, dict[str, Any]]) -> None:
    """ServiceMonitor and PrometheusRule use only fields their CRDs define, correctly typed."""
    document = entry[1]
    jsonschema.validate(document, CRD_SCHEMAS[document["kind"]])


def test_prometheus_rule_is_the_alerts_file() -> None:
    """The PrometheusRule's spec is config/prometheus/alerts.yml, unchanged."""
    rule = find("PrometheusRule", "registry-gateway")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())


def test_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    """The embedded rule groups pass `promtool check rules`."""
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(find("PrometheusRule", "registry-gateway")["spec"]))
    result = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_monitor_scrapes_the_metrics_listener() -> None:
    """Selector, namespace, port name and path lead to the gateway's metrics listener."""
    monitor = find("ServiceMonitor", "registry-gateway")
    service = find("Service", "registry-gateway")
    deployment = find("Deployment", "registry-gateway")
    config = gateway_config(find("ConfigMap", "registry-gateway", "node-mirror.yaml"))
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == config["metrics"]["path"]
    [service_port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    pod = deployment["spec"]["template"]["spec"]
    ports = named_ports(container(pod, "gateway"))
    assert ports[service_port["targetPort"]] == port_of(config["metrics"]["listen"])
    # The alert rules match job="registry-gateway": the Service name is the job label.
    assert "jobLabel" not in monitor["spec"]
    assert service["metadata"]["name"] == "registry-gateway"


@pytest.mark.parametrize(
    ("file", "name"),
    [("node-mirror.yaml", "registry-gateway"), ("sidecar.yaml", "ci-registry-gateway")],
)
def test_embedded_gateway_config_passes_check_config(file: str, name: str, tmp_path: Path) -> None:
    """The gateway.yaml each ConfigMap mounts is accepted by `registry-gateway check-config`."""
    path = tmp_path / "gateway.yaml"
    path.write_text(find("ConfigMap", name, file)["data"]["gateway.yaml"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_GATEWAY")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_node_mirror_ports_and_probes_match_its_config() -> None:
    """Container ports are the config's listeners; probes use the metrics listener's health."""
    config = gateway_config(find("ConfigMap", "registry-gateway", "node-mirror.yaml"))
    deployment = find("Deployment", "registry-gateway")
    pod = deployment["spec"]["template"]["spec"]
    gateway_container = container(pod, "gateway")
    ports = named_ports(gateway_container)
    assert ports == {
        "http": port_of(config["listen"]),
        "metrics": port_of(config["metrics"]["listen"]),
    }
    readiness = gateway_container["readinessProbe"]["httpGet"]
    liveness = gateway_container["livenessProbe"]["httpGet"]
    assert (readiness["path"], readiness["port"]) == ("/readyz", "metrics")
    assert (liveness["path"], liveness["port"]) == ("/healthz", "metrics")
    mounts = {m["mountPath"]: m for m in gateway_container["volumeMounts"]}
    config_path = gateway_container["args"][gateway_container["args"].index("--config") + 1]
    assert str(Path(config_path).parent) in mounts
    service = find("Service", "registry-gateway")
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


def test_termination_grace_covers_the_drain() -> None:
    """terminationGracePeriodSeconds outlasts the preStop sleep plus shutdown_grace."""
    config = gateway_config(find("ConfigMap", "registry-gateway", "node-mirror.yaml"))
    pod = find("Deployment", "registry-gateway")["spec"]["template"]["spec"]
    pre_stop = container(pod, "gateway")["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + config["shutdown_grace"] + 5


@pytest.mark.parametrize(
    ("kind", "name"), [("Deployment", "registry-gateway"), ("Job", "ci-build")]
)
def test_gateway_pods_are_hardened(kind: str, name: str) -> None:
    """Non-root as the image's UID, read-only root, no privilege escalation, no capabilities."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    image_uid = int(
        next(line for line in dockerfile.splitlines() if line.startswith("USER "))
        .split()[1]
        .split(":")[0]
    )
    pod = find(kind, name)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid
    for spec in [*pod.get("initContainers", []), *pod["containers"]]:
        context = spec["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert "memory" in spec["resources"]["limits"]


@pytest.mark.parametrize(
    ("kind", "name", "container_name"),
    [("Deployment", "registry-gateway", "gateway"), ("Job", "ci-build", "registry-gateway")],
)
def test_gateway_image_is_the_package_version(kind: str, name: str, container_name: str) -> None:
    """The image tag is this release's version, never `latest`."""
    pod = find(kind, name)["spec"]["template"]["spec"]
    assert container(pod, container_name)["image"].rpartition(":")[2] == gateway.__version__


def test_every_image_is_pinned() -> None:
    """Every container image names a version tag."""
    for _path, document in DOCUMENTS:
        pod = document.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        for spec in [*pod.get("initContainers", []), *pod["containers"]]:
            tag = spec["image"].rpartition(":")[2]
            assert tag and tag != "latest" and any(ch.isdigit() for ch in tag), spec["image"]


def hosts_templates() -> dict[str, str]:
    templates: dict[str, str] = find("ConfigMap", "containerd-hosts")["data"]
    return templates


def test_containerd_hosts_cover_every_mirrored_upstream() -> None:
    """There is one hosts.toml per upstream of the node mirror, and no other."""
    config = gateway_config(find("ConfigMap", "registry-gateway", "node-mirror.yaml"))
    assert set(hosts_templates()) == set(config["upstreams"])


@pytest.mark.parametrize("namespace", sorted(hosts_templates()))
def test_containerd_hosts_point_at_the_node_port(namespace: str) -> None:
    """Each hosts.toml keeps the upstream as server and pulls via <node IP>:<NodePort> first."""
    config = gateway_config(find("ConfigMap", "registry-gateway", "node-mirror.yaml"))
    service = find("Service", "registry-gateway")
    [http] = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    hosts = tomllib.loads(hosts_templates()[namespace].replace("NODE_IP", FAKE_NODE_IP))
    assert hosts["server"] == config["upstreams"][namespace]["url"]
    [(url, host)] = hosts["host"].items()
    assert urlsplit(url).netloc == f"{FAKE_NODE_IP}:{http['nodePort']}"
    assert urlsplit(url).path in {"", "/"}, "containerd appends /v2 itself"
    assert host == {"capabilities": ["pull", "resolve"]}


def test_daemonset_script_installs_every_hosts_toml(tmp_path: Path) -> None:
    """Running the init container's script writes <registry>/hosts.toml with the node's IP."""
    daemonset = find("DaemonSet", "containerd-hosts")
    pod = daemonset["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["certs-d"]["hostPath"]["path"] == "/etc/containerd/certs.d"
    assert volumes["templates"]["configMap"]["name"] == "containerd-hosts"
    [node_ip] = [e for e in init["env"] if e["name"] == "NODE_IP"]
    assert node_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    # Run the script as written, with the two mounts moved under tmp_path.
    templates, certs_d = tmp_path / "templates", tmp_path / "certs.d"
    templates.mkdir()
    for name, text in hosts_templates().items():
        (templates / name).write_text(text)
    script = (
        init["command"][2]
        .replace(mounts["templates"], str(templates))
        .replace(mounts["certs-d"], str(certs_d))
    )
    assert init["command"][:2] == ["/bin/sh", "-ec"]
    subprocess.run(
        ["/bin/sh", "-ec", script],
        env={"NODE_IP": FAKE_NODE_IP, "PATH": os.environ["PATH"]},
        check=True,
        capture_output=True,
        timeout=30,
    )
    installed = sorted(p.relative_to(certs_d).as_posix() for p in certs_d.rglob("*") if p.is_file())
    assert installed == sorted(f"{name}/hosts.toml" for name in hosts_templates())
    for name in hosts_templates():
        text = (certs_d / name / "hosts.toml").read_text()
        assert "NODE_IP" not in text and FAKE_NODE_IP in text
        tomllib.loads(text)


def test_sidecar_starts_before_the_build_and_gates_it_on_readiness() -> None:
    """The gateway is a native sidecar whose startup probe waits for /readyz (Vault logged in)."""
    job = find("Job", "ci-build")
    pod = job["spec"]["template"]["spec"]
    [sidecar] = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    probe = sidecar["startupProbe"]["httpGet"]
    config = gateway_config(find("ConfigMap", "ci-registry-gateway"))
    assert probe["path"] == "/readyz"
    assert named_ports(sidecar)[probe["port"]] == port_of(config["metrics"]["listen"])
    assert config["listen"].startswith("127.0.0.1:"), "only the pod itself pulls through it"


def test_sidecar_logs_in_to_vault_with_the_projected_token() -> None:
    """Vault Kubernetes auth reads a projected service-account token mounted in the sidecar only."""
    job = find("Job", "ci-build")
    pod = job["spec"]["template"]["spec"]
    account = find("ServiceAccount", pod["serviceAccountName"])
    assert account["metadata"]["namespace"] == job["metadata"]["namespace"]
    auth = gateway_config(find("ConfigMap", "ci-registry-gateway"))["vault"]["auth"]
    assert auth["method"] == "kubernetes" and auth["role"]
    jwt_file = Path(auth["jwt_file"])
    [volume] = [v for v in pod["volumes"] if "projected" in v]
    [source] = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["path"] == jwt_file.name
    assert token["audience"] == "vault"
    assert token["expirationSeconds"] <= 3600
    mounted_in = {
        c["name"]: m["mountPath"]
        for c in [*pod["initContainers"], *pod["containers"]]
        for m in c.get("volumeMounts", [])
        if m["name"] == volume["name"]
    }
    assert mounted_in == {"registry-gateway": str(jwt_file.parent)}
    assert pod["automountServiceAccountToken"] is False


def test_sidecar_build_pulls_through_the_gateway() -> None:
    """The build's registries.conf mirrors each registry to localhost:<listen>/<registry>."""
    configmap = find("ConfigMap", "ci-registry-gateway")
    config = gateway_config(configmap)
    conf = tomllib.loads(configmap["data"]["registries.conf"])
    listen_port = port_of(config["listen"])
    for registry in conf["registry"]:
        assert registry["prefix"] in config["upstreams"]
        [mirror] = registry["mirror"]
        assert mirror["location"] == f"localhost:{listen_port}/{registry['prefix']}"
    build = container(find("Job", "ci-build")["spec"]["template"]["spec"], "build")
    [mount] = [m for m in build["volumeMounts"] if m.get("subPath") == "registries.conf"]
    assert any(arg.endswith(mount["mountPath"]) for arg in build["command"])
