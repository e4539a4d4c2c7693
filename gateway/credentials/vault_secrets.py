"""What a Vault KV secret holds and where it lives: the pure half of Vault credentials.

``secret_location`` puts the caller's tenant into a ``{tenant}`` path, as one safe path segment.
``credentials_from_secret`` turns the secret's key/value data into upstream credentials, taking
the first usable format: username+password, token, auth, ``.dockerconfigjson``. No I/O here:
errors name the KV path and what is wrong with the format, never a value the secret holds.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeGuard

from ..secret import Secret
from ..settings import UpstreamSettings, VaultCredentialsSpec
from .base import CredentialsError, UpstreamCredentials
from .static import docker_config_entry

SECRET_FORMATS = "username+password, token, auth, .dockerconfigjson"  # noqa: S105
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")


class Location(NamedTuple):
    """A KV secret: engine mount and path inside it (tenant already substituted)."""

    mount: str
    path: str

    def __str__(self) -> str:
        return f"{self.mount}/{self.path}"


def credentials_from_secret(
    data: Mapping[str, Any], upstream: UpstreamSettings, where: Location
) -> UpstreamCredentials:
    """The first usable format: username+password, token, auth, ``.dockerconfigjson``."""
    username, password = data.get("username"), data.get("password")
    if _text(username) and _text(password):
        return UpstreamCredentials(username=username, password=Secret(password), source="vault")
    token = data.get("token")
    if _text(token):
        return UpstreamCredentials(token=Secret(token), source="vault")
    auth = data.get("auth")
    if _text(auth):
        try:
            user, colon, word = base64.b64decode(auth, validate=True).decode().partition(":")
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
            user, colon, word = "", "", ""
        if not (user and colon):
            raise CredentialsError(f"Vault secret {where}: auth is not base64 of user:password")
        return UpstreamCredentials(username=user, password=Secret(word), source="vault")
    if ".dockerconfigjson" in data:
        raw = data[".dockerconfigjson"]
        try:
            config = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            config = None
        if not isinstance(config, dict):
            raise CredentialsError(f"Vault secret {where}: .dockerconfigjson is not a JSON object")
        found = docker_config_entry(config, upstream)
        if found is None:
            raise CredentialsError(
                f"Vault secret {where}: .dockerconfigjson has no usable entry for {upstream.key}"
            )
        return dataclasses.replace(found, source="vault")
    raise CredentialsError(f"Vault secret {where} holds none of {SECRET_FORMATS}")


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def secret_location(spec: VaultCredentialsSpec, tenant: str | None, default_mount: str) -> Location:
    """Where the spec's secret lives for this tenant; ``{tenant}`` is substituted."""
    mount = (spec.mount or default_mount).strip("/")
    if not spec.templated:
        return Location(mount, spec.path)
    if tenant is None:
        raise CredentialsError(
            f"Vault path {mount}/{spec.path} needs the caller's tenant; this request has none"
        )
    # SECURITY: a tenant is one path segment, never a way to climb to another tenant's secret.
    if not _TENANT.fullmatch(tenant) or ".." in tenant:
        raise CredentialsError(f"tenant {tenant!r} cannot be used in a Vault path")
    return Location(mount, spec.path.replace("{tenant}", tenant))
