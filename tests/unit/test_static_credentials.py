"""Static credentials: literal, files re-read on change, Docker config.json entries."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from gateway.credentials.base import CredentialsError
from gateway.credentials.static import StaticCredentialStore
from gateway.settings import parse_settings


def store_for(
    credentials: dict[str, object], url: str = "https://ghcr.io"
) -> StaticCredentialStore:
    settings = parse_settings(
        {"upstreams": {"ghcr.io": {"url": url, "credentials": credentials}}},
        environ={}, base_dir=Path("."), source="test",
    )  # fmt: skip
    return StaticCredentialStore(settings.upstreams)


async def test_password_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    """A rotated password file is picked up without a restart, and rejected() says so."""
    secret = tmp_path / "pw"
    secret.write_text("first\n")
    store = store_for({"username": "robot", "password_file": str(secret)})
    creds = await store.get("ghcr.io", None)
    assert (
        creds is not None
        and creds.basic_header() == "Basic " + base64.b64encode(b"robot:first").decode()
    )
    secret.write_text("second-longer\n")
    os.utime(secret, ns=(1, 2))  # make sure the mtime moves even on coarse clocks
    assert await store.rejected("ghcr.io", None) is True
    again = await store.get("ghcr.io", None)
    assert again is not None and again.password is not None
    assert again.password.reveal() == "second-longer"
    assert again.identity != creds.identity


async def test_static_token_is_a_bearer(tmp_path: Path) -> None:
    """token credentials become Authorization: Bearer; inline values need no re-read."""
    store = store_for({"token": "ghp_abc"})
    creds = await store.get("ghcr.io", None)
    assert creds is not None and creds.bearer_header() == "Bearer ghp_abc"
    assert creds.basic_header() is None
    assert await store.rejected("ghcr.io", None) is False
    assert "ghp_abc" not in repr(creds)


@pytest.mark.parametrize(
    "auths",
    [
        {"ghcr.io": {"auth": base64.b64encode(b"me:pw").decode()}},
        {"https://ghcr.io": {"username": "me", "password": "pw"}},
        {"https://ghcr.io/v1/": {"auth": base64.b64encode(b"me:pw").decode()}},
    ],
)
async def test_docker_config_entry_for_the_upstream(
    tmp_path: Path, auths: dict[str, object]
) -> None:
    """The auths entry is found by key, URL or URL with a path; auth is base64 user:pass."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"other.io": {"auth": "eDp5"}, **auths}}))
    creds = await store_for({"docker_config": str(config)}).get("ghcr.io", None)
    assert creds is not None and creds.username == "me"
    assert creds.password is not None and creds.password.reveal() == "pw"


async def test_docker_config_without_entry_is_a_clear_error(tmp_path: Path) -> None:
    """A config.json with no entry for the upstream names the file, never a secret."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"other.io": {"auth": "eDp5"}}}))
    with pytest.raises(CredentialsError, match=r"no usable auths entry for ghcr\.io"):
        await store_for({"docker_config": str(config)}).get("ghcr.io", None)
    config.write_text("{not json")
    with pytest.raises(CredentialsError, match="not valid JSON"):
        await store_for({"docker_config": str(config)}).get("ghcr.io", None)
