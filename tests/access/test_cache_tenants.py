"""The cache keeps tenants apart: content pulled with tenant A's upstream account is never
answered to tenant B from the cache, not even when B names A's digests directly.

Same setup as test_tenants.py: a token-mode docker-registry whose realm lets robot-a read
``team-a/*`` and ``shared/*`` and robot-b only ``shared/*``; OpenBao holds each tenant's robot
at ``<base>/{tenant}``; callers log in to the gateway's token service.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.access.acl_realm import AclUpstream
from tests.access.identities import ec_key, pem, write_htpasswd
from tests.components import images, skopeo
from tests.components.openbao import OpenBao
from tests.gateway_process import GatewayProcess

USERS = {"alice": "alice-pw", "carol": "carol-pw"}
UPSTREAM = "tenanted.test"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[AclUpstream]:
    with AclUpstream.start(
        tmp_path / "upstream", {"robot-a": ["team-a/*", "shared/*"], "robot-b": ["shared/*"]}
    ) as started:
        yield started


def write_secret(openbao: OpenBao, path: str, data: dict[str, str]) -> None:
    openbao.client().adapter.post(f"/v1/secret/data/{path}", json={"data": data})


async def get_as(
    http: aiohttp.ClientSession, gateway: GatewayProcess, user: str, repo: str, tail: str
) -> tuple[int, str | None, bytes]:
    """GET /v2/<UPSTREAM>/<repo>/<tail> as `user` with a gateway token for that repository."""
    async with http.get(
        f"{gateway.url}/token",
        params={"service": "registry-gateway", "scope": f"repository:{UPSTREAM}/{repo}:pull"},
        headers={"Authorization": aiohttp.encode_basic_auth(user, USERS[user])},
    ) as response:
        assert response.status == 200
        token = (await response.json())["token"]
    async with http.get(
        f"{gateway.url}/v2/{UPSTREAM}/{repo}/{tail}",
        headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT},
    ) as response:
        return response.status, response.headers.get("X-Cache"), await response.read()


async def test_tenant_b_never_gets_tenant_a_content_from_the_cache(
    openbao: OpenBao, upstream: AclUpstream, tmp_path: Path
) -> None:
    """After alice (team-a) pulled team-a/secret, carol (team-b) gets none of it: not by tag,
    not by its digests under team-a/secret, not by its digests under shared/app."""
    secret_file = os.urandom(100_000)
    private = images.push(
        images.build_image(tmp_path / "images", "private", files={"/etc/p": secret_file}),
        upstream.registry, "team-a/secret", "v1",
    )  # fmt: skip
    images.push(
        images.build_image(tmp_path / "images", "public", files={"/etc/s": b"shared\n"}),
        upstream.registry, "shared/app", "v1",
    )  # fmt: skip
    base = f"registries/cache-tenants-{uuid.uuid4().hex[:8]}"
    for tenant, robot in (("team-a", "robot-a"), ("team-b", "robot-b")):
        write_secret(
            openbao, f"{base}/{tenant}", {"username": robot, "password": upstream.passwords[robot]}
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
    env = {"VAULT_TOKEN": openbao.root_token}
    with GatewayProcess.start(workdir, config, env=env) as gateway:
        async with aiohttp.ClientSession() as http:
            await check_tenants(gateway, http, private, secret_file, tmp_path, workdir)


async def check_tenants(
    gateway: GatewayProcess,
    http: aiohttp.ClientSession,
    private: images.PushedImage,
    secret_file: bytes,
    tmp_path: Path,
    workdir: Path,
) -> None:
    """alice's pull fills the cache; carol's attempts never come from it."""
    source = f"docker://{gateway.host}/{UPSTREAM}/{private.repo}:v1"
    skopeo.copy_to_oci(source, tmp_path / "alice", src_creds=("alice", USERS["alice"]))
    layer = private.blob_digests[-1]
    # alice's content is in the cache now: her next read of it is a hit.
    status, x_cache, _ = await get_as(http, gateway, "alice", private.repo, f"blobs/{layer}")
    assert (status, x_cache) == (200, "HIT")

    attempts = [
        (private.repo, "manifests/v1"),
        (private.repo, f"manifests/{private.manifest_digest}"),
        *((private.repo, f"blobs/{d}") for d in private.blob_digests),
        ("shared/app", f"manifests/{private.manifest_digest}"),
        *(("shared/app", f"blobs/{d}") for d in private.blob_digests),
    ]
    for repo, tail in attempts:
        status, x_cache, body = await get_as(http, gateway, "carol", repo, tail)
        assert status != 200, (repo, tail)
        assert x_cache != "HIT", (repo, tail)
        assert secret_file not in body
    assert private.manifest_digest.split(":")[1] not in {
        p.name for p in (workdir / "cache").rglob("*") if "t-team-b" in p.parts
    }
