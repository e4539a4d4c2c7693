"""Real clients push through a real gateway process to a real token-mode registry.

The gateway runs in token mode (callers log in to its own token service); its upstream
``registry.test`` is the shared docker-registry in token mode, whose robot password the
gateway reads from OpenBao. skopeo pushes OCI layouts built with umoci; the images are then
read back through the gateway and straight from the registry.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.identities import ec_key, pem, write_htpasswd
from tests.components import images, skopeo
from tests.components.containerd import Containerd, write_hosts_toml
from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.components.skopeo import SkopeoError
from tests.gateway_process import GatewayProcess

UPSTREAM = "registry.test"
USERS = {"alice": "alice-pw", "carol": "carol-pw"}
ALICE = ("alice", USERS["alice"])


def write_secret(openbao: OpenBao, path: str, data: dict[str, str]) -> None:
    openbao.client().adapter.post(f"/v1/secret/data/{path}", json={"data": data})


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, registry_token: Registry, openbao: OpenBao
) -> Iterator[GatewayProcess]:
    """Token-mode gateway; alice (team-a) may push ci/*, carol may only pull it."""
    path = f"registries/push-{uuid.uuid4().hex[:8]}"
    write_secret(
        openbao, path, {"username": registry_token.username, "password": registry_token.password}
    )
    workdir = tmp_path_factory.mktemp("push-gateway")
    write_htpasswd(workdir / "htpasswd", USERS)
    (workdir / "signing.pem").write_bytes(pem(ec_key()))
    config: dict[str, Any] = {
        "upstreams": {
            UPSTREAM: {
                "url": registry_token.url,
                "push": True,
                "credentials": {"vault": {"path": path}},
            }
        },
        "routing": {"default": UPSTREAM},
        "vault": {"url": openbao.url, "auth": {"method": "token", "token_env": "VAULT_TOKEN"}},
        "clients": {
            "auth": "token",
            "htpasswd": "htpasswd",
            "token": {"key_file": "signing.pem"},
            "tenants": {"team-a": ["alice"]},
            "access": [
                {"users": ["alice"], "repositories": [f"{UPSTREAM}/ci/*"],
                 "actions": ["pull", "push"]},
                {"users": ["carol"], "repositories": [f"{UPSTREAM}/ci/*"], "actions": ["pull"]},
            ],
        },
    }  # fmt: skip
    with GatewayProcess.start(workdir, config, env={"VAULT_TOKEN": openbao.root_token}) as process:
        yield process


def digest_of(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def layout_digest(layout: images.LayoutRef) -> str:
    return str(images.tagged_descriptor(layout.path, layout.tag)["digest"])


def direct_raw(registry: Registry, repo: str, reference: str) -> bytes:
    return skopeo.inspect_raw(
        f"docker://{registry.host}/{repo}:{reference}", creds=registry.credentials
    )


def through_gateway(gateway: GatewayProcess, repo: str, reference: str) -> bytes:
    return skopeo.inspect_raw(f"docker://{gateway.host}/{UPSTREAM}/{repo}:{reference}", creds=ALICE)


def token_scopes(registry: Registry, repo: str) -> list[str]:
    """The actions of every scope for ``repo`` the registry's token server issued."""
    lines = registry.count_file.read_text().splitlines()
    return [
        scope.rsplit(":", 1)[1]
        for line in lines
        for scope in line.split()[1:]
        if scope.startswith(f"repository:{repo}:")
    ]


def metric_value(gateway: GatewayProcess, prefix: str) -> float:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_skopeo_pushes_a_single_arch_image_that_pulls_back_identically(
    gateway: GatewayProcess, registry_token: Registry, tmp_path: Path
) -> None:
    """skopeo copy oci:… docker://gateway/registry.test/ci/app:v1 as alice; the manifest reads
    back with the layout's digest through the gateway and straight from the registry."""
    layout = images.build_image(
        tmp_path, "push-single", files={"/etc/a": b"a\n" * 1000, "/etc/b": b"b\n"}, layer_count=2
    )
    repo = f"ci/single-{uuid.uuid4().hex[:6]}"
    uploaded_before = metric_value(gateway, "registry_gateway_upload_bytes_total{")
    skopeo.copy(
        layout.transport_ref, f"docker://{gateway.host}/{UPSTREAM}/{repo}:v1",
        dest_creds=ALICE, extra_args=["--preserve-digests"],
    )  # fmt: skip
    expected = layout_digest(layout)
    assert digest_of(direct_raw(registry_token, repo, "v1")) == expected
    assert digest_of(through_gateway(gateway, repo, "v1")) == expected
    # Every blob pulls back through the gateway too (skopeo verifies each digest).
    skopeo.copy_to_oci(
        f"docker://{gateway.host}/{UPSTREAM}/{repo}:v1", tmp_path / "back", src_creds=ALICE
    )
    assert layout_digest(images.LayoutRef(tmp_path / "back", "latest")) == expected

    # The upstream was asked for push only by the writes; pulls kept pull-only tokens.
    actions = token_scopes(registry_token, repo)
    assert "pull,push" in actions and "pull" in actions
    assert set(actions) <= {"pull", "pull,push"}
    assert metric_value(gateway, "registry_gateway_upload_bytes_total{") > uploaded_before
    writes = [line for line in gateway.log_lines() if line.get("event") == "write_relayed"]
    manifest_puts = [w for w in writes if w["repository"] == repo and w["method"] == "PUT"
                     and w["reference"] == "v1"]  # fmt: skip
    assert manifest_puts and manifest_puts[-1]["digest"] == expected
    assert (manifest_puts[-1]["principal"], manifest_puts[-1]["tenant"]) == ("alice", "team-a")
    text = gateway.log_text()
    assert registry_token.password not in text and "_state" not in text


def test_skopeo_pushes_a_multi_arch_index_that_pulls_back_identically(
    gateway: GatewayProcess, registry_token: Registry, tmp_path: Path
) -> None:
    """skopeo copy --all of an OCI index: the index and each platform manifest read back with
    the same digests through the gateway and straight from the registry."""
    layout = images.build_multiarch(tmp_path, name="push-multi", files={"/etc/m": b"m\n"})
    repo = f"ci/multi-{uuid.uuid4().hex[:6]}"
    skopeo.copy(
        layout.transport_ref, f"docker://{gateway.host}/{UPSTREAM}/{repo}:v1",
        all=True, dest_creds=ALICE, extra_args=["--preserve-digests"],
    )  # fmt: skip
    expected = layout_digest(layout)
    raw = through_gateway(gateway, repo, "v1")
    assert digest_of(raw) == expected == digest_of(direct_raw(registry_token, repo, "v1"))
    index = json.loads(raw)
    assert index["mediaType"] == images.OCI_INDEX and len(index["manifests"]) == 2
    for child in index["manifests"]:
        ref = f"docker://{gateway.host}/{UPSTREAM}/{repo}@{child['digest']}"
        assert digest_of(skopeo.inspect_raw(ref, creds=ALICE)) == child["digest"]


def test_a_pull_only_caller_cannot_push_with_skopeo(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    """carol may pull ci/* but not push: skopeo copy fails with the gateway's denial."""
    layout = images.build_image(tmp_path, "push-denied", files={"/etc/d": b"d\n"})
    with pytest.raises(SkopeoError, match=r"(?i)denied|unauthorized"):
        skopeo.copy(
            layout.transport_ref,
            f"docker://{gateway.host}/{UPSTREAM}/ci/denied:v1",
            dest_creds=("carol", USERS["carol"]),
        )
    refused = [
        line for line in gateway.log_lines()
        if line.get("event") == "access_decided" and line.get("principal") == "carol"
        and line.get("action") == "push"
    ]  # fmt: skip
    assert refused and all(line["result"] == "denied" for line in refused)


def test_ctr_pushes_through_the_plain_http_gateway(
    gateway: GatewayProcess,
    registry_token: Registry,
    containerd: Containerd,
    tmp_path: Path,
) -> None:
    """ctr images push --plain-http via hosts.toml (push capability) lands the same manifest
    in the registry as containerd holds."""
    layout = images.build_image(tmp_path, "push-ctr-src", files={"/etc/c": b"c\n"})
    source = f"ci/ctr-src-{uuid.uuid4().hex[:6]}"
    skopeo.copy(
        layout.transport_ref, f"docker://{gateway.host}/{UPSTREAM}/{source}:v1",
        dest_creds=ALICE, extra_args=["--preserve-digests"],
    )  # fmt: skip
    hosts = tmp_path / "hosts"
    write_hosts_toml(
        hosts, UPSTREAM, gateway.url, server="http://127.0.0.1:1",
        capabilities=("pull", "resolve", "push"),
    )  # fmt: skip
    pulled = f"{UPSTREAM}/{source}:v1"
    containerd.pull(pulled, hosts_dir=hosts, user=ALICE)
    target_repo = f"ci/ctr-{uuid.uuid4().hex[:6]}"
    pushed = f"{UPSTREAM}/{target_repo}:v1"
    try:
        containerd.ctr("images", "tag", pulled, pushed)
        containerd.ctr(
            "images", "push", "--plain-http", "--hosts-dir", str(hosts),
            "--user", f"{ALICE[0]}:{ALICE[1]}", pushed, timeout=120,
        )  # fmt: skip
        expected = containerd.image_digest(pushed)
    finally:
        for ref in (pulled, pushed):
            containerd.ctr("images", "rm", "--sync", ref, check=False)
    assert digest_of(direct_raw(registry_token, target_repo, "v1")) == expected
    writes = [line for line in gateway.log_lines() if line.get("event") == "write_relayed"
              and line["repository"] == target_repo and line["upstream_status"] == 201]  # fmt: skip
    assert any(w["digest"] == expected and w["principal"] == "alice" for w in writes)
