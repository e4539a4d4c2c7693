"""Test images: built with umoci into OCI layouts, pushed with skopeo, blobs uploaded raw.

- `build_image` makes a single-platform image (one umoci repack per layer);
- `build_multiarch` builds one image per architecture with umoci and assembles the OCI image
  index (blob + index.json entry) itself, because umoci cannot make indexes;
- `push` copies a layout tag to a Registry and reads back what the registry stores;
- `push_blob` streams an arbitrarily large blob into a repository.

Every layer holds a marker file naming image, architecture and layer, so two builds with
different names never share layers by accident.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tests.components import client, skopeo
from tests.components.process import ComponentError, require_binary
from tests.components.registry import Registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
REF_NAME = "org.opencontainers.image.ref.name"
UMOCI_TIMEOUT = 60.0
BLOB_CHUNK = 1 << 20


@dataclass(frozen=True)
class LayoutRef:
    """A tag inside an OCI image layout directory."""

    path: Path
    tag: str

    @property
    def transport_ref(self) -> str:
        """The containers-transports(5) name, `oci:DIR:TAG`."""
        return f"oci:{self.path}:{self.tag}"

    def __str__(self) -> str:
        return self.transport_ref


@dataclass(frozen=True)
class PushedImage:
    """What the registry stores for `repo:tag` after a push."""

    repo: str
    tag: str
    manifest_digest: str
    media_type: str
    # Config and layer digests of every manifest pushed (all children for a multi-arch push).
    blob_digests: list[str] = field(default_factory=list)
    # Per-platform manifest digests when the tag is an index, else empty.
    child_digests: list[str] = field(default_factory=list)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def umoci(*args: str) -> None:
    argv = [require_binary("umoci"), *args]
    try:
        result = subprocess.run(argv, capture_output=True, timeout=UMOCI_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ComponentError(f"umoci timed out: {argv}") from exc
    if result.returncode != 0:
        raise ComponentError(
            f"umoci exited {result.returncode}: {' '.join(argv)}\n"
            f"{result.stderr.decode(errors='replace')}"
        )


def rootfs_path(rootfs: Path, image_path: str) -> Path:
    """Map an in-image path ("/etc/x" or "etc/x") under rootfs, refusing escapes."""
    relative = PurePosixPath(image_path.lstrip("/"))
    if not relative.parts or ".." in relative.parts:
        raise ValueError(f"bad image path {image_path!r}")
    return rootfs.joinpath(*relative.parts)


def spread_files(files: Mapping[str, bytes], layer_count: int) -> list[dict[str, bytes]]:
    """Deal files round-robin over the layers (sorted, so builds are reproducible)."""
    layers: list[dict[str, bytes]] = [{} for _ in range(layer_count)]
    for index, name in enumerate(sorted(files)):
        layers[index % layer_count][name] = files[name]
    return layers


def build_into(
    layout: Path,
    tag: str,
    *,
    name: str,
    arch: str,
    files: Mapping[str, bytes],
    layer_count: int,
) -> None:
    """Create `layout:tag` as a linux/arch image with `layer_count` layers."""
    if layer_count < 1:
        raise ValueError("layer_count must be at least 1")
    if not (layout / "index.json").exists():
        umoci("init", "--layout", str(layout))
    image = f"{layout}:{tag}"
    umoci("new", "--image", image)
    umoci("config", "--image", image, "--os", "linux", "--architecture", arch)
    bundle = layout.parent / f".bundle-{layout.name}-{tag}"
    shutil.rmtree(bundle, ignore_errors=True)
    # unpack/repack rather than `umoci insert`: umoci 0.4.7's insert writes layers whose tar
    # stream is truncated (no padding, no end blocks), which strict tar readers reject.
    umoci("unpack", "--image", image, str(bundle))
    try:
        for index, layer_files in enumerate(spread_files(files, layer_count)):
            marker = rootfs_path(bundle / "rootfs", f"/layers/{name}-{arch}-{index}")
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{name} {arch} layer {index}\n")
            for image_path, content in layer_files.items():
                target = rootfs_path(bundle / "rootfs", image_path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            umoci("repack", "--refresh-bundle", "--image", image, str(bundle))
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def read_index(layout: Path) -> dict[str, Any]:
    index: dict[str, Any] = json.loads((layout / "index.json").read_text())
    return index


def tagged_descriptor(layout: Path, tag: str) -> dict[str, Any]:
    for descriptor in read_index(layout)["manifests"]:
        if descriptor.get("annotations", {}).get(REF_NAME) == tag:
            return dict(descriptor)
    raise ComponentError(f"tag {tag!r} not in {layout}/index.json")


def write_blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"sha256:{digest}"


def set_tag(layout: Path, tag: str, descriptor: Mapping[str, Any]) -> None:
    """Point `tag` at `descriptor` in index.json, replacing an older entry for that tag."""
    index = read_index(layout)
    kept = [d for d in index["manifests"] if d.get("annotations", {}).get(REF_NAME) != tag]
    annotations = {**descriptor.get("annotations", {}), REF_NAME: tag}
    index["manifests"] = [*kept, {**descriptor, "annotations": annotations}]
    (layout / "index.json").write_text(json.dumps(index))


def build_image(
    workdir: Path,
    name: str,
    *,
    arch: str = "amd64",
    files: Mapping[str, bytes] | None = None,
    layer_count: int = 1,
) -> LayoutRef:
    """Build a linux/`arch` image in the OCI layout `workdir/name`, tag `latest`.

    `files` maps in-image paths to contents and is dealt round-robin over the layers.
    """
    layout = workdir / name
    build_into(layout, "latest", name=name, arch=arch, files=files or {}, layer_count=layer_count)
    return LayoutRef(layout, "latest")


def build_multiarch(
    workdir: Path,
    archs: Sequence[str] = ("amd64", "arm64"),
    *,
    name: str = "multiarch",
    files: Mapping[str, bytes] | None = None,
) -> LayoutRef:
    """Build one image per arch (tags = arch names) and an OCI index tagged `latest`."""
    layout = workdir / name
    children = []
    for arch in archs:
        build_into(layout, arch, name=name, arch=arch, files=files or {}, layer_count=1)
        child = tagged_descriptor(layout, arch)
        child.pop("annotations", None)
        children.append({**child, "platform": {"architecture": arch, "os": "linux"}})
    index_json = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
    ).encode()
    digest = write_blob(layout, index_json)
    set_tag(layout, "latest", {"mediaType": OCI_INDEX, "digest": digest, "size": len(index_json)})
    return LayoutRef(layout, "latest")


def push(
    layout_ref: LayoutRef | Path,
    registry: Registry,
    repo: str,
    tag: str,
    *,
    all_arches: bool = False,
) -> PushedImage:
    """`skopeo copy` a layout tag to `registry/repo:tag`, then read back what it stores.

    A bare Path means that layout's `latest` tag. Without `all_arches` an index source is
    narrowed by skopeo to the host platform's image, as `skopeo copy` does by default.
    """
    if isinstance(layout_ref, Path):
        layout_ref = LayoutRef(layout_ref, "latest")
    skopeo.copy(
        layout_ref.transport_ref,
        f"docker://{registry.host}/{repo}:{tag}",
        all=all_arches,
        dest_creds=registry.credentials,
        # Keep the bytes umoci wrote, so layout and registry digests agree.
        extra_args=["--preserve-digests"],
    )
    return describe_pushed(registry, repo, tag)


def describe_pushed(registry: Registry, repo: str, tag: str) -> PushedImage:
    response = fetch_manifest(registry, repo, tag)
    body = json.loads(response.body)
    media_type = body.get("mediaType") or response.headers.get_content_type()
    digest = verified_digest(response, f"{repo}:{tag}")
    if media_type not in INDEX_TYPES:
        return PushedImage(repo, tag, digest, media_type, manifest_blobs(body))
    children = [d["digest"] for d in body["manifests"]]
    blobs: list[str] = []
    for child in children:
        child_response = fetch_manifest(registry, repo, child, allow_missing=True)
        # Without --all only some children exist in the registry.
        if child_response.status == 200:
            blobs += manifest_blobs(json.loads(child_response.body))
    return PushedImage(repo, tag, digest, media_type, blobs, children)


def fetch_manifest(
    registry: Registry, repo: str, reference: str, *, allow_missing: bool = False
) -> client.Response:
    response = client.get_manifest(registry, repo, reference)
    if response.status == 200 or (allow_missing and response.status == 404):
        return response
    raise ComponentError(
        f"GET manifest {repo}:{reference} from {registry.url}: {response.status} "
        f"{response.body[:300]!r}"
    )


def verified_digest(response: client.Response, what: str) -> str:
    """sha256 of the manifest bytes, cross-checked against Docker-Content-Digest."""
    digest = f"sha256:{hashlib.sha256(response.body).hexdigest()}"
    header = response.headers.get("Docker-Content-Digest")
    if header is not None and header != digest:
        raise ComponentError(f"{what}: Docker-Content-Digest {header} != body sha256 {digest}")
    return digest


def manifest_blobs(manifest: Mapping[str, Any]) -> list[str]:
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def file_chunks(path: Path, chunk_size: int = BLOB_CHUNK) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def push_blob(registry: Registry, repo: str, data: bytes | Path | Iterable[bytes]) -> str:
    """Upload `data` (bytes, a file path, or an iterator of chunks) as a blob; return digest.

    Files and iterators are streamed, so a 1 GiB blob costs one chunk of memory.
    """
    if isinstance(data, bytes):
        chunks: Iterable[bytes] = (
            data[i : i + BLOB_CHUNK] for i in range(0, len(data), BLOB_CHUNK)
        )
    elif isinstance(data, Path):
        chunks = file_chunks(data)
    else:
        chunks = data
    return client.upload_blob(registry, repo, chunks)
