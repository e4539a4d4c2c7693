"""A minimal synchronous OCI distribution client (urllib) for driving a test Registry.

It speaks each Registry auth mode (none, Basic, Bearer from the token server), reads manifests
and blobs, and uploads blobs as a stream. Token-mode calls fetch a token per call, so they show
up in `Registry.token_count()`: take deltas around the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message

from tests.components.process import ComponentError
from tests.components.registry import Registry

HTTP_TIMEOUT = 60.0
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)

# No proxy handler: an http_proxy variable must never send loopback traffic elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def fetch_token(registry: Registry, scope: str) -> str:
    """A bearer token for `scope` from the registry's token server (counts as one issue)."""
    assert registry.token_url is not None
    query = urllib.parse.urlencode({"service": registry.token_service, "scope": scope})
    request = urllib.request.Request(
        f"{registry.token_url}?{query}",
        headers={"Authorization": basic_authorization(registry.username, registry.password)},
    )
    with _OPENER.open(request, timeout=HTTP_TIMEOUT) as response:
        token: str = json.load(response)["token"]
        return token


def authorization(registry: Registry, scope: str) -> str | None:
    """The Authorization header value for `scope`, or None for an open registry."""
    if registry.auth is None:
        return None
    if registry.auth == "htpasswd":
        return basic_authorization(registry.username, registry.password)
    return "Bearer " + fetch_token(registry, scope)


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def send(
    url: str,
    *,
    method: str = "GET",
    auth: str | None = None,
    headers: Mapping[str, str] | None = None,
    data: bytes | Iterable[bytes] | None = None,
) -> Response:
    """One request; HTTP error statuses come back as a Response, not an exception."""
    all_headers = dict(headers or {})
    if auth is not None:
        all_headers["Authorization"] = auth
    request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with _OPENER.open(request, timeout=HTTP_TIMEOUT) as response:
            return Response(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Response(exc.code, exc.headers, exc.read())


def get_manifest(
    registry: Registry, repo: str, reference: str, *, authenticate: bool = True
) -> Response:
    """GET a manifest accepting every OCI/Docker v2 manifest type."""
    auth = authorization(registry, pull_scope(repo)) if authenticate else None
    return send(
        f"{registry.url}/v2/{repo}/manifests/{reference}",
        auth=auth,
        headers={"Accept": MANIFEST_ACCEPT},
    )


def get_blob(registry: Registry, repo: str, digest: str) -> Response:
    return send(
        f"{registry.url}/v2/{repo}/blobs/{digest}", auth=authorization(registry, pull_scope(repo))
    )


def expect(response: Response, status: int, what: str) -> Response:
    if response.status != status:
        raise ComponentError(
            f"{what}: expected HTTP {status}, got {response.status}: "
            f"{response.body[:500].decode(errors='replace')}"
        )
    return response


def upload_blob(registry: Registry, repo: str, chunks: Iterable[bytes]) -> str:
    """Upload a blob as one streamed PATCH (chunked transfer encoding) and return its digest.

    The digest is computed while the chunks flow, so memory stays at one chunk whatever the
    size: POST starts the session, PATCH streams, PUT ?digest= commits (end-4a/5/6).
    """
    auth = authorization(registry, push_scope(repo))
    started = expect(
        send(f"{registry.url}/v2/{repo}/blobs/uploads/", method="POST", auth=auth),
        202,
        f"start blob upload to {repo}",
    )
    hasher = hashlib.sha256()

    def hashed(source: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in source:
            if chunk:
                hasher.update(chunk)
                yield chunk

    patched = expect(
        send(
            upload_location(registry, started),
            method="PATCH",
            auth=auth,
            headers={"Content-Type": "application/octet-stream"},
            data=hashed(chunks),
        ),
        202,
        f"stream blob to {repo}",
    )
    digest = f"sha256:{hasher.hexdigest()}"
    location = upload_location(registry, patched)
    separator = "&" if "?" in location else "?"
    expect(
        send(
            f"{location}{separator}{urllib.parse.urlencode({'digest': digest})}",
            method="PUT",
            auth=auth,
            headers={"Content-Length": "0", "Content-Type": "application/octet-stream"},
            data=b"",
        ),
        201,
        f"commit blob {digest} to {repo}",
    )
    return digest


def upload_location(registry: Registry, response: Response) -> str:
    location = response.headers.get("Location")
    if not location:
        raise ComponentError(f"upload response without Location: {response.status}")
    # distribution answers absolute URLs, but the spec allows relative ones.
    return urllib.parse.urljoin(registry.url + "/", location)


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class PushedManifest:
    """What ``push_oci_image`` stored: the manifest bytes and every digest."""

    manifest: bytes
    manifest_digest: str
    config_digest: str
    layer_digest: str


def push_oci_image(
    registry: Registry, repo: str, tag: str, *, config: bytes, layer: bytes
) -> PushedManifest:
    """Upload a config and one layer blob and PUT an OCI manifest naming them.

    Quicker than building with umoci; the layer is not a real tar, so these images are for
    the distribution API, not for unpacking.
    """
    config_digest = upload_blob(registry, repo, [config])
    layer_digest = upload_blob(registry, repo, [layer])
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
    ).encode()
    expect(
        send(
            f"{registry.url}/v2/{repo}/manifests/{tag}",
            method="PUT",
            auth=authorization(registry, push_scope(repo)),
            headers={"Content-Type": OCI_MANIFEST},
            data=manifest,
        ),
        201,
        f"PUT manifest {repo}:{tag}",
    )
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    return PushedManifest(manifest, digest, config_digest, layer_digest)
