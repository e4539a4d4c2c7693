"""Smoke tests: each real component starts, answers, and does what the helpers promise."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.components import client, images, skopeo
from tests.components.containerd import Containerd, write_hosts_toml
from tests.components.openbao import OpenBao
from tests.components.registry import Registry

REGISTRY_FIXTURES = ["registry_open", "registry_htpasswd", "registry_token"]
# A namespace nothing listens on: a client that ignored its mirror config fails fast, on loopback.
UNREACHABLE = "127.0.0.1:1"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> images.LayoutRef:
    return images.build_image(
        tmp_path_factory.mktemp("images"),
        "smoke",
        files={"/etc/smoke.txt": b"smoke\n", "/data/blob.bin": os.urandom(4096)},
        layer_count=2,
    )


@pytest.fixture(scope="module")
def multiarch(tmp_path_factory: pytest.TempPathFactory) -> images.LayoutRef:
    return images.build_multiarch(tmp_path_factory.mktemp("multiarch"))


@pytest.mark.parametrize("registry_fixture", REGISTRY_FIXTURES)
def test_registry_accepts_push_and_serves_manifest_to_authed_get(
    registry_fixture: str, image: images.LayoutRef, request: pytest.FixtureRequest
) -> None:
    """A pushed image's manifest comes back, with the pushed digest, to an authenticated GET."""
    registry: Registry = request.getfixturevalue(registry_fixture)
    pushed = images.push(image, registry, "smoke/single", "v1")

    response = client.get_manifest(registry, "smoke/single", "v1")

    assert response.status == 200
    assert response.headers["Docker-Content-Digest"] == pushed.manifest_digest
    assert pushed.media_type == images.OCI_MANIFEST
    assert len(pushed.blob_digests) == 3  # config + 2 layers


@pytest.mark.parametrize("registry_fixture", ["registry_htpasswd", "registry_token"])
def test_authed_registry_rejects_anonymous_get(
    registry_fixture: str, image: images.LayoutRef, request: pytest.FixtureRequest
) -> None:
    """Without credentials the registry answers 401 with its challenge."""
    registry: Registry = request.getfixturevalue(registry_fixture)
    images.push(image, registry, "smoke/anon", "v1")

    response = client.get_manifest(registry, "smoke/anon", "v1", authenticate=False)

    assert response.status == 401
    scheme = "Basic" if registry.auth == "htpasswd" else "Bearer"
    assert response.headers["WWW-Authenticate"].startswith(scheme)


def test_token_server_counts_issued_tokens(registry_token: Registry) -> None:
    """Each token fetch adds one to token_count(); the token server demands Basic auth."""
    before = registry_token.token_count()
    client.fetch_token(registry_token, "repository:smoke/count:pull")
    assert registry_token.token_count() == before + 1

    assert registry_token.token_url is not None
    anonymous = client.send(f"{registry_token.token_url}?scope=repository:x:pull")
    assert anonymous.status == 401
    assert registry_token.token_count() == before + 1


def test_multiarch_push_keeps_the_index(
    registry_open: Registry, multiarch: images.LayoutRef
) -> None:
    """build_multiarch + push(all_arches=True) stores an OCI index with both platforms."""
    pushed = images.push(multiarch, registry_open, "smoke/multi", "v1", all_arches=True)

    index = json.loads(client.get_manifest(registry_open, "smoke/multi", "v1").body)
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert pushed.is_index
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    assert [m["digest"] for m in index["manifests"]] == pushed.child_digests
    assert len(pushed.blob_digests) == 4


def test_push_blob_round_trips_5_mib(registry_htpasswd: Registry) -> None:
    """push_blob streams a 5 MiB blob; GET returns the same bytes."""
    data = os.urandom(5 * 1024 * 1024)

    digest = images.push_blob(registry_htpasswd, "smoke/blobs", data)

    assert digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    response = client.get_blob(registry_htpasswd, "smoke/blobs", digest)
    assert response.status == 200
    assert hashlib.sha256(response.body).hexdigest() == digest.removeprefix("sha256:")


@pytest.mark.parametrize("registry_fixture", ["registry_open", "registry_token"])
def test_containerd_pulls_from_registry_via_hosts_toml(
    registry_fixture: str,
    image: images.LayoutRef,
    containerd: Containerd,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """ctr pulls and unpacks an image via a hosts.toml mirror entry pointing at docker-registry.

    The image's own namespace is a refused loopback port, so only the mirror can serve it.
    """
    registry: Registry = request.getfixturevalue(registry_fixture)
    pushed = images.push(image, registry, "smoke/ctr", "v1")
    write_hosts_toml(tmp_path, UNREACHABLE, registry.url, server=f"http://{UNREACHABLE}")
    ref = f"{UNREACHABLE}/smoke/ctr:v1"

    containerd.pull(ref, hosts_dir=tmp_path, user=registry.credentials)

    assert containerd.image_digest(ref) == pushed.manifest_digest
    check = containerd.check_image(ref)
    assert check.complete
    assert check.unpacked


def test_skopeo_copies_through_a_registries_conf_mirror(
    registry_open: Registry, image: images.LayoutRef, tmp_path: Path
) -> None:
    """A registries.conf mirror entry sends skopeo to the mirror; digests survive the copy."""
    pushed = images.push(image, registry_open, "mirror/smoke", "v1")
    conf = skopeo.write_registries_conf(
        tmp_path / "registries.conf",
        prefix="upstream.test",
        # Refused at once if the mirror failed: the fallback stays on loopback.
        location=UNREACHABLE,
        mirror_location=f"{registry_open.host}/mirror",
    )

    raw = skopeo.inspect_raw("docker://upstream.test/smoke:v1", registries_conf=conf)
    skopeo.copy_to_oci("docker://upstream.test/smoke:v1", tmp_path / "oci", registries_conf=conf)

    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == pushed.manifest_digest
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == pushed.manifest_digest


def test_htpasswd_password_change_applies_without_restart(tmp_path: Path) -> None:
    """set_password rewrites htpasswd; distribution 2.8 reloads it on the next request."""
    with Registry.start(tmp_path, "htpasswd", password="before") as registry:
        old_auth = client.basic_authorization(registry.username, "before")
        assert client.send(f"{registry.url}/v2/", auth=old_auth).status == 200

        registry.set_password("after")

        new_auth = client.basic_authorization(registry.username, "after")
        assert client.send(f"{registry.url}/v2/", auth=old_auth).status == 401
        assert client.send(f"{registry.url}/v2/", auth=new_auth).status == 200


def test_openbao_kv_round_trip_is_audited(openbao: OpenBao) -> None:
    """KV v2 write/read through hvac works and the audit log counts the read."""
    vault = openbao.client()
    path = "registries/smoke.example"
    vault.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"username": "u", "password": "p"}
    )
    before = openbao.count_requests(f"secret/data/{path}", operation="read")

    secret = vault.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)

    assert secret["data"]["data"] == {"username": "u", "password": "p"}
    assert openbao.count_requests(f"secret/data/{path}", operation="read") == before + 1
