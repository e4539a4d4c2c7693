"""VaultCredentialStore in-process against the real OpenBao: tenants, rejection, a free loop."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.credentials.base import CredentialsError, UpstreamCredentials
from gateway.credentials.vault import VaultCredentialStore
from gateway.metrics import Metrics
from gateway.settings import Settings, parse_settings
from tests.components.openbao import OpenBao
from tests.components.registry import htpasswd_line
from tests.vault.loopback import SilentListener
from tests.vault.openbao_setup import unique_path, write_secret


def settings_for(
    vault_url: str, paths: Mapping[str, str], htpasswd: Path | None = None, **vault: Any
) -> Settings:
    """Settings with one Vault-backed upstream per path (and tenants, given an htpasswd)."""
    upstreams = {
        key: {"url": f"https://{key}", "credentials": {"vault": {"path": path}}}
        for key, path in paths.items()
    }
    return parse_settings(
        {
            "upstreams": upstreams,
            "routing": {"default": next(iter(paths))},
            "vault": {"url": vault_url, **vault},
            "clients": {
                "auth": "basic",
                "htpasswd": str(htpasswd),
                "tenants": {"team-a": ["alice"], "team-b": ["bob"]},
            }
            if htpasswd
            else None,
        },
        environ={"VAULT_TOKEN": "root"},
        base_dir=Path("."),
        source="test",
    )


@pytest.fixture
async def running() -> AsyncIterator[list[VaultCredentialStore]]:
    """Stores appended here are started by the test and closed at teardown."""
    stores: list[VaultCredentialStore] = []
    yield stores
    for store in stores:
        await store.close()


async def started(settings: Settings, stores: list[VaultCredentialStore]) -> VaultCredentialStore:
    assert settings.vault is not None
    store = VaultCredentialStore(settings.vault, settings.upstreams, Metrics())
    stores.append(store)
    await store.start()
    return store


def password_of(creds: UpstreamCredentials | None) -> str:
    assert creds is not None and creds.password is not None
    return creds.password.reveal()


async def test_tenant_path_reads_that_tenants_secret(
    openbao: OpenBao, running: list[VaultCredentialStore], tmp_path: Path
) -> None:
    """{tenant} picks each tenant's own secret; without a tenant the read is refused (502)."""
    base = unique_path("tenants")
    for tenant in ("team-a", "team-b"):
        write_secret(openbao.client(), f"{base}/{tenant}", {"username": tenant, "password": tenant})
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(htpasswd_line("alice", "alice-pw") + htpasswd_line("bob", "bob-pw"))
    settings = settings_for(openbao.url, {"ghcr.io": base + "/{tenant}"}, htpasswd)
    store = await started(settings, running)
    assert password_of(await store.get("ghcr.io", "team-a")) == "team-a"
    assert password_of(await store.get("ghcr.io", "team-b")) == "team-b"
    with pytest.raises(CredentialsError, match="needs the caller's tenant") as caught:
        await store.get("ghcr.io", None)
    assert caught.value.status == 502
    assert await store.rejected("ghcr.io", None) is False


async def test_rejection_drops_only_the_secret_the_request_used(
    openbao: OpenBao, running: list[VaultCredentialStore]
) -> None:
    """Two requests refused with the old secret cause one re-read, not two."""
    path = unique_path("rejected")
    root = openbao.client()
    write_secret(root, path, {"username": "robot", "password": "old"})
    store = await started(settings_for(openbao.url, {"ghcr.io": path}, cache_ttl=300), running)
    got_old = [asyncio.Event(), asyncio.Event()]
    go, a_done = asyncio.Event(), asyncio.Event()

    async def request(index: int, go: asyncio.Event, done: asyncio.Event | None) -> str:
        # Each request is its own task, like aiohttp's handlers: its own context.
        assert password_of(await store.get("ghcr.io", None)) == "old"
        got_old[index].set()
        await go.wait()
        assert await store.rejected("ghcr.io", None) is True
        fresh = password_of(await store.get("ghcr.io", None))
        if done is not None:
            done.set()
        return fresh

    task_a = asyncio.create_task(request(0, go, a_done))
    task_b = asyncio.create_task(request(1, a_done, None))  # refused after A re-read
    await asyncio.gather(got_old[0].wait(), got_old[1].wait())
    write_secret(root, path, {"username": "robot", "password": "new"})
    go.set()
    assert await asyncio.gather(task_a, task_b) == ["new", "new"]
    assert openbao.count_requests(f"secret/data/{path}", operation="read") == 2


async def test_event_loop_runs_freely_while_vault_hangs(
    running: list[VaultCredentialStore],
) -> None:
    """hvac blocks only a Vault worker thread: the loop keeps ticking, the read fails in bounds."""
    with SilentListener() as hung_vault:
        settings = settings_for(hung_vault.url, {"ghcr.io": "registries/ghcr.io"}, timeout=0.5)
        store = await started(settings, running)
        ticks: list[float] = []

        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.02)

        ticker = asyncio.create_task(tick())
        started_at = time.monotonic()
        with pytest.raises(CredentialsError) as caught:
            await store.get("ghcr.io", None)
        took = time.monotonic() - started_at
        ticker.cancel()
        assert caught.value.status == 503
        assert "secret/registries/ghcr.io" in str(caught.value)
        assert took < 2 * 0.5 + 1.5
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert len(ticks) > 10 and max(gaps) < 0.2
        assert store.problem() is not None
