"""Real clients against a real gateway process in token mode: skopeo, `skopeo login`, ctr.

One gateway serves the module (users and rules from conftest.clients_section); the upstream is
the shared open docker-registry as docker.io and as gcr.io. Its log file is read back to check
the audit lines and that no password or token was ever written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.conftest import PASSWORDS, TAG, AccessImage, clients_section, upstreams_for
from tests.access.identities import ec_key, pem, write_htpasswd
from tests.components import skopeo
from tests.components.client import HTTP_TIMEOUT, basic_authorization
from tests.components.containerd import Containerd, write_hosts_toml
from tests.components.registry import Registry
from tests.components.skopeo import SkopeoError
from tests.gateway_process import GatewayProcess


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, registry_open: Registry, access_image: AccessImage
) -> Iterator[GatewayProcess]:
    """A token-mode gateway with its htpasswd and signing key in its own directory."""
    workdir = tmp_path_factory.mktemp("access-gateway")
    write_htpasswd(workdir / "htpasswd", PASSWORDS)
    (workdir / "signing.pem").write_bytes(pem(ec_key()))
    config = {
        "upstreams": upstreams_for(registry_open),
        "routing": {"default": "docker.io"},
        "clients": clients_section(),
    }
    with GatewayProcess.start(workdir, config) as process:
        yield process


def manifest_digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def inspect(gateway: GatewayProcess, name: str, creds: tuple[str, str] | None = None) -> bytes:
    return skopeo.inspect_raw(f"docker://{gateway.host}/{name}:{TAG}", creds=creds)


def token_get(gateway: GatewayProcess, user: str, password: str) -> int:
    """Status of GET /token with Basic credentials."""
    request = urllib.request.Request(
        f"{gateway.url}/token?service=registry-gateway",
        headers={"Authorization": basic_authorization(user, password)},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_skopeo_with_src_creds_pulls_what_the_user_may(
    gateway: GatewayProcess, access_image: AccessImage, tmp_path: Path
) -> None:
    """`skopeo copy --src-creds alice:...` of gcr.io/team-a/app: the whole image arrives."""
    skopeo.copy_to_oci(
        f"docker://{gateway.host}/gcr.io/team-a/app:{TAG}",
        tmp_path / "layout",
        src_creds=("alice", PASSWORDS["alice"]),
    )
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == access_image.manifest_digest
    for digest in access_image.blob_digests:
        assert (tmp_path / "layout" / "blobs" / "sha256" / digest.split(":")[1]).is_file()


def test_skopeo_without_creds_pulls_what_anonymous_may(
    gateway: GatewayProcess, access_image: AccessImage
) -> None:
    """No credentials: an anonymous token, enough for docker.io's library (`alpine`)."""
    assert manifest_digest(inspect(gateway, "alpine")) == access_image.manifest_digest


def test_skopeo_is_refused_where_rules_deny(gateway: GatewayProcess) -> None:
    """Anonymous on team-a: unauthorized; carol (team-b) on team-a: denied."""
    with pytest.raises(SkopeoError, match=r"(?i)unauthorized|authentication required"):
        inspect(gateway, "gcr.io/team-a/app")
    with pytest.raises(SkopeoError, match=r"(?i)denied"):
        inspect(gateway, "gcr.io/team-a/app", ("carol", PASSWORDS["carol"]))
    with pytest.raises(SkopeoError, match=r"(?i)unauthorized|authentication"):
        inspect(gateway, "gcr.io/team-a/app", ("alice", "wrong-password"))


def test_skopeo_login_then_pull_with_the_auth_file(
    gateway: GatewayProcess, access_image: AccessImage, tmp_path: Path
) -> None:
    """`skopeo login` checks the password through /v2/ + /token and stores it for later pulls."""
    authfile = tmp_path / "auth.json"
    base = ["--tls-verify=false", "--authfile", str(authfile)]
    with pytest.raises(SkopeoError):
        skopeo.run_skopeo(["login", *base, "-u", "bob", "-p", "not-bobs", gateway.host])
    assert not authfile.exists() or gateway.host not in authfile.read_text()
    skopeo.run_skopeo(["login", *base, "-u", "bob", "-p", PASSWORDS["bob"], gateway.host])
    stored = json.loads(authfile.read_text())["auths"][gateway.host]["auth"]
    assert base64.b64decode(stored).decode() == f"bob:{PASSWORDS['bob']}"
    raw = skopeo.run_skopeo(
        ["inspect", "--raw", *base, f"docker://{gateway.host}/gcr.io/team-a/app:{TAG}"]
    ).stdout
    assert manifest_digest(raw) == access_image.manifest_digest


def test_ctr_pull_with_user_through_hosts_toml(
    gateway: GatewayProcess, containerd: Containerd, access_image: AccessImage, tmp_path: Path
) -> None:
    """containerd sends ?ns=gcr.io and POSTs /token (grant_type=password) first."""
    hosts = tmp_path / "hosts"
    # The fallback server refuses connections at once, so only the gateway can serve.
    write_hosts_toml(hosts, "gcr.io", gateway.url, server="http://127.0.0.1:1")
    ref = f"gcr.io/team-a/app:{TAG}"
    containerd.pull(ref, hosts_dir=hosts, user=("alice", PASSWORDS["alice"]))
    try:
        assert containerd.image_digest(ref) == access_image.manifest_digest
        assert containerd.check_image(ref).complete
    finally:
        containerd.remove_image(ref)
    lines = gateway.log_lines()
    posted = [
        line
        for line in lines
        if line.get("event") == "token_decided" and line.get("grant") == "password"
    ]
    assert posted and posted[-1]["principal"] == "alice" and posted[-1]["result"] == "granted"
    assert "repository:team-a/app:pull" in posted[-1]["granted"]
    manifests = [
        line
        for line in lines
        if line.get("event") == "request_completed" and line.get("route") == "manifest"
    ]
    assert any(m["principal"] == "alice" and m["tenant"] == "team-a" for m in manifests)


def test_ctr_pull_is_refused_for_a_user_without_rights(
    gateway: GatewayProcess, containerd: Containerd, tmp_path: Path
) -> None:
    """carol may not pull team-a's image: ctr fails (403 from the gateway)."""
    hosts = tmp_path / "hosts"
    write_hosts_toml(hosts, "gcr.io", gateway.url, server="http://127.0.0.1:1")
    result = containerd.pull(
        f"gcr.io/team-a/app:{TAG}", hosts_dir=hosts, user=("carol", PASSWORDS["carol"]), check=False
    )
    assert result.returncode != 0
    assert "403" in result.stderr or "denied" in result.stderr.lower()


def test_htpasswd_changes_apply_without_a_restart(gateway: GatewayProcess) -> None:
    """Add a user and change a password in the file: the running gateway follows within ~1 s."""
    users = {**PASSWORDS, "erin": "erin-pw", "dave": "dave-new-pw"}
    assert token_get(gateway, "erin", "erin-pw") == 401
    write_htpasswd(gateway.workdir / "htpasswd", users)
    deadline = time.monotonic() + 10
    while token_get(gateway, "erin", "erin-pw") != 200:
        assert time.monotonic() < deadline, "the new htpasswd entry never took effect"
        time.sleep(0.2)
    assert token_get(gateway, "dave", "dave-new-pw") == 200
    assert token_get(gateway, "dave", PASSWORDS["dave"]) == 401
    assert any(line.get("event") == "htpasswd_reloaded" for line in gateway.log_lines())


def test_audit_lines_record_each_decision_and_no_secret(gateway: GatewayProcess) -> None:
    """access_decided / token_decided carry principal, tenant, upstream, name, action, result,
    reason; the log never holds a password, a Basic header or a JWT."""
    inspect(gateway, "gcr.io/team-a/app", ("alice", PASSWORDS["alice"]))
    lines = gateway.log_lines()
    decided: list[dict[str, Any]] = [
        line for line in lines if line.get("event") == "access_decided"
    ]
    granted = [
        line
        for line in decided
        if line["result"] == "granted" and line["principal"] == "alice" and line["upstream"]
    ]
    assert granted
    assert {k: granted[-1][k] for k in ("tenant", "upstream", "name", "action", "scheme")} == {
        "tenant": "team-a",
        "upstream": "gcr.io",
        "name": "team-a/app",
        "action": "pull",
        "scheme": "token",
    }
    assert granted[-1]["reason"] == "clients.access[1]"
    assert any(line["result"] == "denied" and line["reason"] for line in decided)
    text = gateway.log_text()
    for secret in [*PASSWORDS.values(), "dave-new-pw", "erin-pw", "wrong-password"]:
        assert secret not in text
    assert "eyJ" not in text
    assert basic_authorization("alice", PASSWORDS["alice"]).split()[1] not in text


def test_skopeo_against_basic_mode(
    start_gateway: Any, registry_open: Registry, access_image: AccessImage, tmp_path: Path
) -> None:
    """auth: basic: skopeo sends --creds as Basic on every request; anonymous rules still apply."""
    write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    config = {
        "upstreams": upstreams_for(registry_open),
        "routing": {"default": "docker.io"},
        "clients": {**clients_section(auth="basic"), "htpasswd": str(tmp_path / "htpasswd")},
    }
    config["clients"].pop("token")
    basic_gateway = start_gateway(config)
    alice = ("alice", PASSWORDS["alice"])
    raw = inspect(basic_gateway, "gcr.io/team-a/app", alice)
    assert manifest_digest(raw) == access_image.manifest_digest
    assert manifest_digest(inspect(basic_gateway, "alpine")) == access_image.manifest_digest
    with pytest.raises(SkopeoError, match=r"(?i)unauthorized|authentication required"):
        inspect(basic_gateway, "gcr.io/team-a/app")
    with pytest.raises(SkopeoError, match=r"(?i)denied"):
        inspect(basic_gateway, "gcr.io/team-b/app", alice)
