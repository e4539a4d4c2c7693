"""The gateway's exception tree and the one renderer of the OCI error envelope.

::

    RegistryError                     code / status carried by each class
    ├── NameInvalid                   NAME_INVALID 400
    ├── DigestInvalid                 DIGEST_INVALID 400
    ├── TagInvalid                    TAG_INVALID 400
    ├── ManifestUnknown               MANIFEST_UNKNOWN 404
    ├── NameUnknown                   NAME_UNKNOWN 404
    ├── EndpointUnknown               UNSUPPORTED 404 (a path that is no registry endpoint)
    ├── Unsupported                   UNSUPPORTED 405
    ├── Unauthorized                  UNAUTHORIZED 401 (carries WWW-Authenticate)
    ├── Denied                        DENIED 403
    ├── TooManyRequests               TOOMANYREQUESTS 429 (carries Retry-After)
    ├── PaginationInvalid             PAGINATION_NUMBER_INVALID 400
    └── UpstreamError                 UNAVAILABLE
        ├── UpstreamUnreachable       502
        ├── UpstreamTimeout           504
        ├── UpstreamAuthFailed        502 (the upstream's token service refused us)
        └── CredentialsUnavailable    502 / 503 (credentials could not be had)

Anything else that escapes a handler is rendered as 500 ``UNKNOWN`` without a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


class RegistryError(Exception):
    """An error the gateway answers with the OCI envelope."""

    code = "UNKNOWN"
    status = 500
    default_message = "unknown error"

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(self.message)


class NameInvalid(RegistryError):
    code, status, default_message = "NAME_INVALID", 400, "invalid repository name"


class DigestInvalid(RegistryError):
    code, status, default_message = "DIGEST_INVALID", 400, "invalid digest"


class TagInvalid(RegistryError):
    code, status, default_message = "TAG_INVALID", 400, "invalid tag"


class ManifestUnknown(RegistryError):
    code, status, default_message = "MANIFEST_UNKNOWN", 404, "manifest unknown"


class NameUnknown(RegistryError):
    code, status, default_message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class EndpointUnknown(RegistryError):
    code, status, default_message = "UNSUPPORTED", 404, "no such endpoint"


class Unsupported(RegistryError):
    code, status, default_message = "UNSUPPORTED", 405, "the operation is unsupported"


class Unauthorized(RegistryError):
    code, status, default_message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, default_message = "DENIED", 403, "requested access to the resource is denied"


class TooManyRequests(RegistryError):
    code, status, default_message = "TOOMANYREQUESTS", 429, "too many requests"


class PaginationInvalid(RegistryError):
    code, status, default_message = (
        "PAGINATION_NUMBER_INVALID",
        400,
        "invalid number of results requested",
    )


class UpstreamError(RegistryError):
    code, status, default_message = "UNAVAILABLE", 502, "upstream unavailable"


class UpstreamUnreachable(UpstreamError):
    status, default_message = 502, "upstream registry unreachable"


class UpstreamTimeout(UpstreamError):
    status, default_message = 504, "upstream registry timed out"


class UpstreamAuthFailed(UpstreamError):
    status, default_message = 502, "the upstream refused the gateway's credentials"


class CredentialsUnavailable(UpstreamError):
    status, default_message = 502, "upstream credentials unavailable"


def envelope(code: str, message: str, detail: Any = None) -> bytes:
    """The OCI error body: ``{"errors":[{"code","message","detail"}]}`` (spec "Error Codes")."""
    entry: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    return json.dumps({"errors": [entry]}).encode()


def render(error: RegistryError) -> web.Response:
    """Turn a RegistryError into its HTTP response."""
    headers = {**API_VERSION_HEADER, **error.headers, "Content-Type": "application/json"}
    return web.Response(
        status=error.status,
        body=envelope(error.code, error.message, error.detail),
        headers=headers,
    )


def render_status(status: int, code: str, message: str) -> web.Response:
    """The envelope for errors aiohttp raises itself (404 route, 405 method, 413 ...)."""
    return web.Response(
        status=status,
        body=envelope(code, message),
        headers={**API_VERSION_HEADER, "Content-Type": "application/json"},
    )
