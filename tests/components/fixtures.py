"""pytest plugin: session-wide real components (`pytest_plugins = ["tests.components.fixtures"]`).

Each fixture starts one real process for the whole session and stops it (by PID) at teardown.
A missing binary raises ComponentError: CI must fail, never skip, when a component is absent.
Tests that change a component's state (passwords, restarts) should start their own instance
with `Registry.start(tmp_path, ...)` instead of using these shared ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.containerd import Containerd
from tests.components.openbao import OpenBao
from tests.components.registry import Registry


@pytest.fixture(scope="session")
def component_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session temp dir holding every shared component's config, data and logs."""
    return tmp_path_factory.mktemp("components")


@pytest.fixture(scope="session")
def registry_open(component_dir: Path) -> Iterator[Registry]:
    """A docker-registry without auth."""
    with Registry.start(component_dir / "registry-open", None) as registry:
        yield registry


@pytest.fixture(scope="session")
def registry_htpasswd(component_dir: Path) -> Iterator[Registry]:
    """A docker-registry with Basic auth (bcrypt htpasswd)."""
    with Registry.start(component_dir / "registry-htpasswd", "htpasswd") as registry:
        yield registry


@pytest.fixture(scope="session")
def registry_token(component_dir: Path) -> Iterator[Registry]:
    """A docker-registry with Bearer auth from a countable token server."""
    with Registry.start(component_dir / "registry-token", "token") as registry:
        yield registry


@pytest.fixture(scope="session")
def openbao(component_dir: Path) -> Iterator[OpenBao]:
    """An OpenBao dev server (root token `root`, KV v2 at `secret/`) with a file audit log."""
    with OpenBao.start(component_dir / "openbao") as server:
        yield server


@pytest.fixture(scope="session")
def containerd(component_dir: Path) -> Iterator[Containerd]:
    """A private containerd daemon driven with `ctr`."""
    with Containerd.start(component_dir / "containerd") as daemon:
        yield daemon
