"""Real clients pull through the gateway: skopeo (path prefix, registries.conf mirror) and ctr.

Every fallback a client could take on a gateway failure is a refused loopback port, so a pull
that succeeds went through the gateway; the gateway's own log lines confirm it.

A path-prefix upstream key used by skopeo carries no port: a docker reference allows no ``:``
inside its path (`docker://GW/127.0.0.1:5000/repo` is "invalid reference format"), so the
registry is configured under a port-less name; containerd's `?ns=` carries host:port fine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.components import images, skopeo
from tests.components.containerd import Containerd, write_hosts_toml
from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.integration.harness import (
    GatewayFactory,
    gateway_config,
    gateway_requests,
    logged,
    registry_gateway_config,
    upstream,
)

REGISTRY_NAME = "registry.test"  # the port-less upstream key skopeo addresses
UNREACHABLE = "127.0.0.1:1"  # a namespace nothing listens on: refused at once


@pytest.fixture(scope="module")
def prefix_gateway(
    tmp_path_factory: pytest.TempPathFactory, registry_open: Registry
) -> Iterator[GatewayProcess]:
    """registry_open as upstream `registry.test`; the default upstream is unreachable."""
    config = gateway_config(
        {
            REGISTRY_NAME: upstream(registry_open.url),
            UNREACHABLE: upstream(f"http://{UNREACHABLE}"),
        },
        default=UNREACHABLE,
    )
    with GatewayProcess.start(tmp_path_factory.mktemp("gateway-skopeo"), config) as process:
        yield process


def layout_digests(layout: Path) -> tuple[str, set[str]]:
    """The digest index.json points at, and every blob digest the layout holds."""
    index = json.loads((layout / "index.json").read_text())
    blobs = {f"sha256:{p.name}" for p in (layout / "blobs" / "sha256").iterdir()}
    return index["manifests"][0]["digest"], blobs


def served_paths(gateway: GatewayProcess, *, expect: Iterable[str] = ()) -> list[str]:
    """Paths the gateway answered 200, in order, once every path in `expect` is among them."""
    wanted = set(expect)

    def ok(lines: list[dict[str, Any]]) -> list[str]:
        return [line["path"] for line in gateway_requests(lines) if line["status"] == 200]

    return ok(logged(gateway, lambda lines: wanted <= set(ok(lines))))


@pytest.mark.parametrize("multiarch", [False, True], ids=["single-arch", "all-arches"])
def test_skopeo_copies_through_the_path_prefix_form(
    multiarch: bool,
    prefix_gateway: GatewayProcess,
    single_image: images.PushedImage,
    multiarch_image: images.PushedImage,
    tmp_path: Path,
) -> None:
    """`skopeo copy [--all] docker://GATEWAY/registry.test/<repo>:<tag>` keeps every digest."""
    image = multiarch_image if multiarch else single_image
    source = f"docker://{prefix_gateway.host}/{REGISTRY_NAME}/{image.repo}:{image.tag}"

    raw = skopeo.inspect_raw(source)
    skopeo.copy_to_oci(source, tmp_path / "oci", all=multiarch)

    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == image.manifest_digest
    top, blobs = layout_digests(tmp_path / "oci")
    assert top == image.manifest_digest
    assert set(image.blob_digests) | set(image.child_digests) <= blobs
    expected = {f"/v2/{REGISTRY_NAME}/{image.repo}/blobs/{d}" for d in image.blob_digests}
    assert expected <= set(served_paths(prefix_gateway, expect=expected))


@pytest.mark.parametrize("multiarch", [False, True], ids=["single-arch", "all-arches"])
def test_skopeo_copies_through_a_registries_conf_mirror(
    multiarch: bool,
    prefix_gateway: GatewayProcess,
    single_image: images.PushedImage,
    multiarch_image: images.PushedImage,
    tmp_path: Path,
) -> None:
    """A registries.conf mirror at GATEWAY/registry.test serves `registry.test/...` pulls."""
    image = multiarch_image if multiarch else single_image
    conf = skopeo.write_registries_conf(
        tmp_path / "registries.conf",
        prefix=REGISTRY_NAME,
        location=UNREACHABLE,
        mirror_location=f"{prefix_gateway.host}/{REGISTRY_NAME}",
    )
    source = f"docker://{REGISTRY_NAME}/{image.repo}:{image.tag}"
    seen_before = len(served_paths(prefix_gateway))

    raw = skopeo.inspect_raw(source, registries_conf=conf)
    skopeo.copy_to_oci(source, tmp_path / "oci", all=multiarch, registries_conf=conf)

    assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == image.manifest_digest
    top, blobs = layout_digests(tmp_path / "oci")
    assert top == image.manifest_digest
    assert set(image.blob_digests) | set(image.child_digests) <= blobs
    manifest_path = f"/v2/{REGISTRY_NAME}/{image.repo}/manifests/{image.tag}"
    served_now = served_paths(prefix_gateway)[seen_before:]
    if manifest_path not in served_now:
        served_now = served_paths(prefix_gateway, expect=[manifest_path])[seen_before:]
    assert manifest_path in served_now


@pytest.fixture(scope="module")
def ctr_images(
    tmp_path_factory: pytest.TempPathFactory, registry_open: Registry, registry_token: Registry
) -> dict[str, images.PushedImage]:
    """Images no other test pulls, so containerd's content store cannot already hold them."""
    workdir = tmp_path_factory.mktemp("ctr-images")
    files = {"/etc/ctr-it.txt": b"pulled by containerd through the gateway\n"}
    return {
        "single": images.push(
            images.build_image(workdir, "ctr-single", files=files), registry_open, "it/ctr", "v1"
        ),
        "multi": images.push(
            images.build_multiarch(workdir, name="ctr-multi", files=files),
            registry_open, "it/ctr-multi", "v1", all_arches=True,
        ),
        "token": images.push(
            images.build_image(workdir, "ctr-token", files=files), registry_token, "it/ctr", "v1"
        ),
    }  # fmt: skip


def ctr_gateway_config(registry: Registry) -> dict[str, Any]:
    """The registry under its host:port key, no default: only `?ns=` can route a plain name."""
    config = registry_gateway_config(
        registry,
        **(
            {"credentials": {"username": registry.username, "password": registry.password}}
            if registry.auth
            else {}
        ),
    )
    config["routing"]["default"] = None
    return config


@pytest.mark.parametrize("case", ["single", "multi", "token"])
def test_containerd_pulls_through_the_gateway_with_ns(
    case: str,
    request: pytest.FixtureRequest,
    ctr_images: dict[str, images.PushedImage],
    containerd: Containerd,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    """`ctr images pull --hosts-dir` via the gateway: digests match, `?ns=` routed every call."""
    # In the token case the registry wants credentials; only the gateway holds them.
    registry: Registry = request.getfixturevalue(
        "registry_token" if case == "token" else "registry_open"
    )
    image = ctr_images[case]
    gateway = start_gateway(ctr_gateway_config(registry))
    write_hosts_toml(tmp_path, registry.host, gateway.url, server=f"http://{UNREACHABLE}")
    ref = f"{registry.host}/{image.repo}:{image.tag}"

    containerd.pull(ref, hosts_dir=tmp_path, all_platforms=case == "multi")

    assert containerd.image_digest(ref) == image.manifest_digest
    check = containerd.check_image(ref)
    assert check.complete
    if case != "multi":
        assert check.unpacked
    blob_paths = {f"/v2/{image.repo}/blobs/{digest}" for digest in image.blob_digests}
    requests = gateway_requests(
        logged(gateway, lambda lines: blob_paths <= {r["path"] for r in gateway_requests(lines)})
    )
    assert requests, "containerd never reached the gateway"
    # No default upstream and no path prefix: `?ns=<registry host>` routed every request.
    for line in requests:
        assert line["upstream"] == registry.host, line
        assert line["path"].startswith(f"/v2/{image.repo}/"), line
    ok = {line["path"] for line in requests if line["status"] == 200}
    assert f"/v2/{image.repo}/manifests/{image.tag}" in ok or any(
        path.endswith(image.manifest_digest) for path in ok
    )
    assert blob_paths <= ok
