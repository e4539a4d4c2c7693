"""Manifest media types and the Accept policy (distribution-spec content negotiation)."""

from __future__ import annotations

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# Sent upstream when a caller sends no Accept: without them distribution downgrades lists
# to one platform's manifest and refuses OCI types (distribution registry/handlers/manifests.go).
DEFAULT_MANIFEST_ACCEPT = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)


def manifest_accept(values: list[str]) -> list[str]:
    """Every Accept value the caller sent (Docker sends one line per type).

    A caller that names no manifest type (none at all, or only ``*/*`` like curl) gets the
    four defaults added, so it sees the manifest the registry stores, not a downgrade.
    """
    cleaned = [v for v in (value.strip() for value in values) if v]
    types = {t.split(";", 1)[0].strip() for v in cleaned for t in v.split(",")}
    if not types & set(DEFAULT_MANIFEST_ACCEPT):
        cleaned.extend(DEFAULT_MANIFEST_ACCEPT)
    return cleaned
