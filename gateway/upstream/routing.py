"""Choosing the upstream for a request (CONTRACT.md "Routing a request to an upstream").

In order, the first that applies wins: ``ns`` query parameter, ``routing.hosts`` by Host header,
a path prefix naming a configured upstream, ``routing.default``. Only configured upstreams are
ever chosen: no host a caller names is dialled.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import EndpointUnknown, NameInvalid, NameUnknown, Unsupported
from ..oci.names import is_valid_name
from ..settings import DOCKER_HUB, normalize_registry

Route = Literal["base", "manifest", "blob", "tags", "referrers", "other"]

_PATHS: list[tuple[Route, re.Pattern[str]]] = [
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<arg>[^/]+)")),  # end-3
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<arg>[^/]+)")),  # end-2
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),  # end-8a/8b
    ("referrers", re.compile(r"(?P<name>.+)/referrers/(?P<arg>[^/]+)")),  # end-12a/12b
]


@dataclass(frozen=True)
class ApiPath:
    """A parsed ``/v2/`` path: the endpoint, the name as written and its argument."""

    route: Route
    name: str = ""
    arg: str = ""


def parse_api_path(tail: str) -> ApiPath:
    """Split the part after ``/v2/`` into endpoint, name and reference/digest."""
    if tail == "":
        return ApiPath("base")
    for route, pattern in _PATHS:
        match = pattern.fullmatch(tail)
        if match:
            return ApiPath(route, match.group("name"), match.groupdict().get("arg") or "")
    if tail.startswith("_catalog"):
        raise Unsupported("the gateway does not offer a catalog")
    raise EndpointUnknown(detail={"path": "/v2/" + tail})


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
        if upstream == DOCKER_HUB and "/" not in name:
            name = f"library/{name}"  # docker.io official images live under library/
        # Validated as the upstream sees it: "library/" can push a name past the spec's 255.
        if not is_valid_name(name):
            raise NameInvalid(detail={"name": caller_name})
        return Target(upstream, name, caller_name, via)  # type: ignore[arg-type]


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
