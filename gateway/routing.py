"""Choosing the upstream for a request (CONTRACT.md "Routing a request to an upstream").

Request-level and pure: used by ``access`` (which rules apply to a name) and by the handlers
(where a request goes) before anything talks to an upstream.

In order, the first that applies wins: ``ns`` query parameter, ``routing.hosts`` by Host header,
a path prefix naming a configured upstream, ``routing.default``. Only configured upstreams are
ever chosen: no host a caller names is dialled.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import NameInvalid, NameUnknown
from .oci.names import is_valid_name
from .settings import DOCKER_HUB, normalize_registry

Route = Literal["base", "manifest", "blob", "tags", "referrers", "token", "other"]
"""Every metrics ``route`` label value (CONTRACT.md "Metrics")."""


@dataclass(frozen=True)
class Target:
    """Where a request goes: upstream key, the name there, and the name as the caller wrote it."""

    upstream: str
    name: str
    caller_name: str
    via: Literal["ns", "host", "prefix", "default"]

    @property
    def access_name(self) -> str:
        """``<upstream>/<name>``: what access rules match against."""
        return f"{self.upstream}/{self.name}"


@dataclass(frozen=True)
class Router:
    upstreams: Collection[str]
    hosts: Mapping[str, str]
    default: str | None

    def route(self, caller_name: str, *, ns: str | None, host: str | None) -> Target:
        """Pick the upstream for ``caller_name``; raise NAME_UNKNOWN / NAME_INVALID."""
        if ns is not None:
            upstream = normalize_registry(ns)
            if upstream not in self.upstreams:
                raise NameUnknown(f"namespace {ns!r} is not a configured upstream")
            return self._target(upstream, caller_name, caller_name, "ns")
        if host:
            mapped = self.hosts.get(_strip_port(host).lower())
            if mapped is not None:
                return self._target(mapped, caller_name, caller_name, "host")
        first, sep, rest = caller_name.partition("/")
        if sep and normalize_registry(first) in self.upstreams:
            return self._target(normalize_registry(first), rest, caller_name, "prefix")
        if self.default is None:
            raise NameUnknown("no upstream matches this name and no default is configured")
        return self._target(self.default, caller_name, caller_name, "default")

    @staticmethod
    def _target(upstream: str, name: str, caller_name: str, via: str) -> Target:
        if not is_valid_name(name):
            raise NameInvalid(detail={"name": caller_name})
        if upstream == DOCKER_HUB and "/" not in name:
            name = f"library/{name}"  # docker.io official images live under library/
        return Target(upstream, name, caller_name, via)  # type: ignore[arg-type]


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
