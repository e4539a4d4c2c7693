"""Fixtures for the push suite: an in-process token-mode gateway in front of a real registry.

The shared open docker-registry is configured twice: as ``push.test`` with ``push: true`` and
as ``ro.test`` without it. alice and bob (tenant team-a) may pull and push
``push.test/team-a/*``; carol may only pull ``push.test/*``; dave may also delete there.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from tests.access.identities import basic, ec_key, make_settings, pem, write_htpasswd
from tests.components.registry import Registry

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"}
PUSH = "push.test"
READ_ONLY = "ro.test"

Client = TestClient[web.Request, web.Application]


def clients_section() -> dict[str, Any]:
    return {
        "auth": "token",
        "htpasswd": "htpasswd",
        "token": {"key_file": "signing.pem"},
        "tenants": {"team-a": ["alice", "bob"], "team-b": ["carol"]},
        "access": [
            {"users": ["alice", "bob"], "repositories": [f"{PUSH}/team-a/*", f"{READ_ONLY}/*"],
             "actions": ["pull", "push"]},
            {"users": ["carol"], "repositories": [f"{PUSH}/*"], "actions": ["pull"]},
            {"users": ["dave"], "repositories": [f"{PUSH}/*"],
             "actions": ["pull", "push", "delete"]},
        ],
    }  # fmt: skip


def unique(prefix: str = "team-a") -> str:
    """A repository name of its own under ``prefix``, so tests never share upstream state."""
    return f"{prefix}/r{uuid.uuid4().hex[:10]}"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


@pytest.fixture
def auth_dir(tmp_path: Path) -> Path:
    write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    (tmp_path / "signing.pem").write_bytes(pem(ec_key()))
    return tmp_path


@pytest.fixture
def start_gateway(
    aiohttp_client: Callable[..., Awaitable[Client]], auth_dir: Path, registry_open: Registry
) -> Callable[..., Awaitable[Client]]:
    """start_gateway(**limits): the app in-process, ``push.test`` and ``ro.test`` upstream."""

    async def start(**limits: Any) -> Client:
        upstreams = {
            PUSH: {"url": registry_open.url, "push": True},
            READ_ONLY: {"url": registry_open.url},
        }
        extra = {"limits": limits} if limits else {}
        settings = make_settings(auth_dir, upstreams, clients_section(), **extra)
        return await aiohttp_client(create_app(settings))

    return start


@pytest.fixture
async def gateway(start_gateway: Callable[..., Awaitable[Client]]) -> Client:
    return await start_gateway()


async def bearer(client: Client, user: str, *scopes: str) -> dict[str, str]:
    """``Authorization`` for ``user`` holding a gateway token for ``scopes``."""
    query = [("service", "registry-gateway"), *(("scope", s) for s in scopes)]
    response = await client.get(
        "/token", params=query, headers={"Authorization": basic(user, PASSWORDS[user])}
    )
    assert response.status == 200, await response.text()
    return {"Authorization": f"Bearer {(await response.json())['token']}"}


async def pusher(
    client: Client, user: str, name: str, actions: str = "pull,push"
) -> dict[str, str]:
    """``user``'s Authorization for ``push.test/<name>`` with ``actions``."""
    return await bearer(client, user, f"repository:{PUSH}/{name}:{actions}")


async def errors_of(response: Any) -> list[str]:
    body = await response.json(content_type=None)
    return [entry["code"] for entry in body["errors"]]
