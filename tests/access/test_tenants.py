"""Two tenants, one upstream, their own OpenBao-held credentials, and nothing shared between them.

The upstream is a real docker-registry in token mode whose realm (tests/access/acl_realm.py)
lets robot-a read ``team-a/*`` and ``shared/*`` but robot-b only ``shared/*``. OpenBao holds
robot-a's password at ``<base>/team-a`` and robot-b's at ``<base>/team-b``; the gateway's
upstream uses ``<base>/{tenant}``. The callers log in to the gateway's own token service.
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

USERS = {"alice": "alice-pw", "carol": "carol-pw", "dave": "dave-pw"}
UPSTREAM = "tenanted.test"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[AclUpstream]:
    """The token-mode registry with robot-a (team-a/*, shared/*) and robot-b (shared/*)."""
    with AclUpstream.start(
        tmp_path / "upstream", {"robot-a": ["team-a/*", "shared/*"], "robot-b": ["shared/*"]}
    ) as started:
        yield started


def write_secret(openbao: OpenBao, path: str, data: dict[str, str]) -> None:
    openbao.client().adapter.post(f"/v1/secret/data/{path}", json={"data": data})


def pull(gateway: GatewayProcess, repo: str, user: str) -> str:
    """The manifest digest skopeo reads through the gateway as ``user``."""
    raw = skopeo.inspect_raw(
        f"docker://{gateway.host}/{UPSTREAM}/{repo}:v1", creds=(user, USERS[user])
    )
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def test_each_tenant_pulls_with_its_own_credentials_and_never_the_others(
    openbao: OpenBao, upstream: AclUpstream, tmp_path: Path
) -> None:
    """alice (team-a) reads team-a/secret; carol (team-b) cannot, even right after alice, though
    both read shared/app; dave (no tenant) is refused by the gateway itself."""
    layout = images.build_image(tmp_path / "images", "tenant-app", files={"/etc/t": b"t\n"})
    secret = images.push(layout, upstream.registry, "team-a/secret", "v1")
    shared = images.push(layout, upstream.registry, "shared/app", "v1")

    base = f"registries/access-tenants-{uuid.uuid4().hex[:8]}"
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
        "upstreams": {
            UPSTREAM: {"url": upstream.url, "credentials": {"vault": {"path": base + "/{tenant}"}}}
        },
        "routing": {"default": None},
        "vault": {"url": openbao.url, "auth": {"method": "token", "token_env": "VAULT_TOKEN"}},
        "clients": {
            "auth": "token",
            "htpasswd": "htpasswd",
            "token": {"key_file": "signing.pem"},
            "tenants": {"team-a": ["alice"], "team-b": ["carol"]},
            "access": [{"users": ["*"], "repositories": [f"{UPSTREAM}/*"], "actions": ["pull"]}],
        },
    }
    with GatewayProcess.start(workdir, config, env={"VAULT_TOKEN": openbao.root_token}) as gateway:
        assert pull(gateway, "team-a/secret", "alice") == secret.manifest_digest
        # The gateway now holds team-a's upstream token for exactly this scope: carol must not
        # get it, nor team-a's credentials; her own (robot-b) are refused upstream.
        with pytest.raises(SkopeoError):
            pull(gateway, "team-a/secret", "carol")
        assert pull(gateway, "shared/app", "carol") == shared.manifest_digest
        assert pull(gateway, "shared/app", "alice") == shared.manifest_digest
        with pytest.raises(SkopeoError, match=r"(?i)denied"):
            pull(gateway, "shared/app", "dave")

        issues = upstream.issues()
        by_robot = {
            user: [(i["requested"], i["granted"]) for i in issues if i["user"] == user]
            for user in ("robot-a", "robot-b")
        }
        secret_scope = ["repository:team-a/secret:pull"]
        assert (secret_scope, secret_scope) in by_robot["robot-a"]
        assert (secret_scope, []) in by_robot["robot-b"]  # carol's pull asked with robot-b
        assert any(r == ["repository:shared/app:pull"] for r, _ in by_robot["robot-b"])

        assert openbao.count_requests(f"secret/data/{base}/team-a", operation="read") >= 1
        assert openbao.count_requests(f"secret/data/{base}/team-b", operation="read") >= 1
        completed = [
            line
            for line in gateway.log_lines()
            if line.get("event") == "request_completed" and line.get("route") == "manifest"
        ]
        tenants = {(line["principal"], line["tenant"], line["status"]) for line in completed}
        assert ("alice", "team-a", 200) in tenants and ("carol", "team-b", 200) in tenants
        assert ("dave", None, 403) in tenants
        text = gateway.log_text()
        for value in [*passwords.values(), *USERS.values()]:
            assert value not in text
