"""Two tenants push the same repository name, each with its own upstream robot from OpenBao.

The upstream is a real docker-registry in token mode whose realm (tests/access/acl_realm.py)
logs which robot asked for which scopes and what it was granted: robot-a may use
``team-a/*`` and ``shared/*``, robot-b only ``shared/*``. The gateway's upstream reads
``<base>/{tenant}`` from OpenBao; alice is team-a, carol team-b.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.acl_realm import AclUpstream
from tests.access.identities import ec_key, pem, write_htpasswd
from tests.components import images, skopeo
from tests.components.openbao import OpenBao
from tests.components.skopeo import SkopeoError
from tests.gateway_process import GatewayProcess

USERS = {"alice": "alice-pw", "carol": "carol-pw"}
UPSTREAM = "tenanted.test"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[AclUpstream]:
    with AclUpstream.start(
        tmp_path / "upstream", {"robot-a": ["team-a/*", "shared/*"], "robot-b": ["shared/*"]}
    ) as started:
        yield started


def write_secret(openbao: OpenBao, path: str, data: dict[str, str]) -> None:
    openbao.client().adapter.post(f"/v1/secret/data/{path}", json={"data": data})


def push(gateway: GatewayProcess, layout: images.LayoutRef, repo: str, tag: str, user: str) -> None:
    skopeo.copy(
        layout.transport_ref, f"docker://{gateway.host}/{UPSTREAM}/{repo}:{tag}",
        dest_creds=(user, USERS[user]), extra_args=["--preserve-digests"],
    )  # fmt: skip


def pushed_by(issues: list[dict[str, Any]], repo: str) -> set[str]:
    """The robots that were granted push on ``repo`` in these token issues."""
    return {
        issue["user"]
        for issue in issues
        if any(g.startswith(f"repository:{repo}:") and "push" in g.rsplit(":", 1)[1]
               for g in issue["granted"])
    }  # fmt: skip


def test_each_tenant_pushes_with_its_own_robot(
    openbao: OpenBao, upstream: AclUpstream, tmp_path: Path
) -> None:
    """alice's push of shared/app goes as robot-a, carol's push of the same name as robot-b;
    carol cannot push team-a/app (robot-b may not), even right after alice did."""
    base = f"registries/push-tenants-{uuid.uuid4().hex[:8]}"
    passwords = upstream.passwords
    write_secret(
        openbao, f"{base}/team-a", {"username": "robot-a", "password": passwords["robot-a"]}
    )
    write_secret(
        openbao, f"{base}/team-b", {"username": "robot-b", "password": passwords["robot-b"]}
    )
    workdir = tmp_path / "gateway"
    workdir.mkdir()
    write_htpasswd(workdir / "htpasswd", USERS)
    (workdir / "signing.pem").write_bytes(pem(ec_key()))
    config: dict[str, Any] = {
        "upstreams": {UPSTREAM: {"url": upstream.url, "push": True,
                                 "credentials": {"vault": {"path": base + "/{tenant}"}}}},
        "routing": {"default": None},
        "vault": {"url": openbao.url, "auth": {"method": "token", "token_env": "VAULT_TOKEN"}},
        "clients": {
            "auth": "token", "htpasswd": "htpasswd", "token": {"key_file": "signing.pem"},
            "tenants": {"team-a": ["alice"], "team-b": ["carol"]},
            "access": [{"users": ["*"], "repositories": [f"{UPSTREAM}/*"],
                        "actions": ["pull", "push"]}],
        },
    }  # fmt: skip
    layout_a = images.build_image(tmp_path / "images", "tenant-a", files={"/etc/a": b"a\n"})
    layout_b = images.build_image(tmp_path / "images", "tenant-b", files={"/etc/b": b"b\n"})
    with GatewayProcess.start(workdir, config, env={"VAULT_TOKEN": openbao.root_token}) as gateway:
        push(gateway, layout_a, "shared/app", "a", "alice")
        after_alice = len(upstream.issues())
        assert pushed_by(upstream.issues(), "shared/app") == {"robot-a"}

        push(gateway, layout_b, "shared/app", "b", "carol")
        carols = upstream.issues()[after_alice:]
        assert pushed_by(carols, "shared/app") == {"robot-b"}
        assert {issue["user"] for issue in carols} == {"robot-b"}

        push(gateway, layout_a, "team-a/app", "v1", "alice")
        with pytest.raises(SkopeoError, match=r"(?i)denied|403"):
            push(gateway, layout_b, "team-a/app", "v2", "carol")
        assert "robot-b" not in pushed_by(upstream.issues(), "team-a/app")

        for tag, layout in (("a", layout_a), ("b", layout_b)):
            raw = skopeo.inspect_raw(
                f"docker://{upstream.registry.host}/shared/app:{tag}",
                creds=(upstream.registry.username, upstream.registry.password),
            )
            expected = images.tagged_descriptor(layout.path, layout.tag)["digest"]
            assert "sha256:" + hashlib.sha256(raw).hexdigest() == expected

        writes = [line for line in gateway.log_lines() if line.get("event") == "write_relayed"
                  and line.get("reference") in ("a", "b")]  # fmt: skip
        assert {(w["principal"], w["tenant"], w["reference"]) for w in writes} == {
            ("alice", "team-a", "a"), ("carol", "team-b", "b"),
        }  # fmt: skip
        text = gateway.log_text()
        for secret in passwords.values():
            assert secret not in text
