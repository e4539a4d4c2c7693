"""Fixtures for the operations tests: pushed images and the observed Prometheus scenario.

Real components (registries, OpenBao) come from tests/components via the root conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.components import images
from tests.components.openbao import OpenBao
from tests.components.registry import Registry
from tests.ops.scenario import Scenario, run_scenario


@pytest.fixture(scope="session")
def ops_layout(tmp_path_factory: pytest.TempPathFactory) -> images.LayoutRef:
    """A two-layer test image in an OCI layout."""
    return images.build_image(
        tmp_path_factory.mktemp("ops-layouts"),
        "ops-app",
        files={"/etc/ops/a": b"a" * 4096, "/etc/ops/b": b"b" * 70_000},
        layer_count=2,
    )


@pytest.fixture(scope="session")
def ops_image(ops_layout: images.LayoutRef, registry_token: Registry) -> images.PushedImage:
    """The test image as ops/app:v1 on the token-auth registry."""
    return images.push(ops_layout, registry_token, "ops/app", "v1")


@pytest.fixture(scope="session")
def ops_image_htpasswd(
    ops_layout: images.LayoutRef, registry_htpasswd: Registry
) -> images.PushedImage:
    """The same image as ops/app:v1 on the Basic-auth registry."""
    return images.push(ops_layout, registry_htpasswd, "ops/app", "v1")


@pytest.fixture(scope="package")
def observed(
    tmp_path_factory: pytest.TempPathFactory,
    registry_token: Registry,
    registry_htpasswd: Registry,
    openbao: OpenBao,
    ops_image: images.PushedImage,
    ops_image_htpasswd: images.PushedImage,
) -> Iterator[Scenario]:
    """Known pulls through a gateway process, snapshotted from a real Prometheus."""
    stoppables: list[Any] = []
    try:
        yield run_scenario(
            tmp_path_factory.mktemp("observed"),
            stoppables,
            registry_token=registry_token,
            registry_htpasswd=registry_htpasswd,
            openbao=openbao,
            image=ops_image,
            vaulted_image=ops_image_htpasswd,
        )
    finally:
        for component in reversed(stoppables):
            component.stop()
