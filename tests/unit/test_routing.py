"""gateway.routing: ns, then Host, then path prefix, then default (CONTRACT.md)."""

from __future__ import annotations

import pytest

from gateway.errors import NameInvalid, NameUnknown
from gateway.routing import Router

UPSTREAMS = frozenset({"docker.io", "gcr.io", "localhost:5000", "quay.io"})


def router(default: str | None = "docker.io") -> Router:
    return Router(UPSTREAMS, {"gcr.mirror.example.com": "gcr.io"}, default)


def test_ns_wins_over_everything() -> None:
    """ns picks the upstream even when Host and a path prefix point elsewhere."""
    target = router().route("gcr.io/foo", ns="quay.io", host="gcr.mirror.example.com")
    assert (target.upstream, target.name, target.via) == ("quay.io", "gcr.io/foo", "ns")


def test_ns_aliases_and_unknown_ns() -> None:
    """Docker Hub aliases normalise; an ns naming no upstream is NAME_UNKNOWN."""
    assert router().route("library/alpine", ns="registry-1.docker.io", host=None).upstream == (
        "docker.io"
    )
    with pytest.raises(NameUnknown):
        router().route("library/alpine", ns="evil.example.com", host=None)


def test_host_mapping_beats_prefix() -> None:
    """routing.hosts maps the Host header (port ignored) before a path prefix is considered."""
    target = router().route("quay.io/x", ns=None, host="gcr.mirror.example.com:5000")
    assert (target.upstream, target.name, target.via) == ("gcr.io", "quay.io/x", "host")


def test_path_prefix_strips_the_registry() -> None:
    """A first component naming an upstream selects it and is removed from the name."""
    target = router().route("gcr.io/google-containers/pause", ns=None, host="gw:5000")
    assert (target.upstream, target.name) == ("gcr.io", "google-containers/pause")
    assert target.caller_name == "gcr.io/google-containers/pause"
    assert target.access_name == "gcr.io/google-containers/pause"
    port = router().route("localhost:5000/team/app", ns=None, host=None)
    assert (port.upstream, port.name) == ("localhost:5000", "team/app")


def test_docker_hub_library_rule() -> None:
    """One-component docker.io names get library/; alias prefixes work too."""
    assert router().route("alpine", ns=None, host=None).name == "library/alpine"
    assert router().route("docker.io/alpine", ns=None, host=None).name == "library/alpine"
    assert router().route("index.docker.io/library/alpine", ns=None, host=None).name == (
        "library/alpine"
    )
    assert router().route("bitnami/redis", ns=None, host=None).name == "bitnami/redis"
    assert router().route("pause", ns="gcr.io", host=None).name == "pause"


def test_unconfigured_host_falls_to_default_not_dialled() -> None:
    """A first component naming an unconfigured registry is just part of a default name."""
    target = router().route("evil.example.com/x", ns=None, host=None)
    assert (target.upstream, target.name) == ("docker.io", "evil.example.com/x")


def test_no_default_means_name_unknown() -> None:
    """Without routing.default a name no rule matches is NAME_UNKNOWN."""
    with pytest.raises(NameUnknown):
        router(default=None).route("alpine", ns=None, host=None)


def test_invalid_names_after_routing() -> None:
    """The name left after routing must follow the grammar."""
    with pytest.raises(NameInvalid):
        router().route("gcr.io/UPPER", ns=None, host=None)
    with pytest.raises(NameInvalid):
        router().route("127.0.0.1:9/x", ns=None, host=None)
