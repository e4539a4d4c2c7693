"""Header policy (allow-lists, Link rewriting) and where credentials may be sent."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.upstream.headers import (
    caller_response_headers,
    rewrite_link,
    upstream_request_headers,
)
from gateway.upstream.realms import credentials_allowed, registrable_domain


def proxy(*items: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(items))


def test_caller_credentials_never_go_upstream() -> None:
    """Authorization, Cookie, Host and hop-by-hop headers from the caller are dropped."""
    caller = proxy(
        ("Authorization", "Basic c2VjcmV0"),
        ("Cookie", "session=1"),
        ("Host", "gateway"),
        ("Connection", "keep-alive"),
        ("Range", "bytes=0-9"),
        ("If-None-Match", '"sha256:x"'),
        ("Accept", "a"),
        ("Accept", "b"),
    )
    sent = upstream_request_headers(caller, None, "ua/1")
    assert "Authorization" not in sent and "Cookie" not in sent and "Host" not in sent
    assert "Connection" not in sent
    assert sent["Range"] == "bytes=0-9" and sent["If-None-Match"] == '"sha256:x"'
    assert sent.getall("Accept") == ["a", "b"]  # every Accept line, as Docker sends them
    assert sent["User-Agent"] == "ua/1"


def test_explicit_accept_replaces_callers() -> None:
    """The manifest Accept policy's list is what goes upstream."""
    sent = upstream_request_headers(proxy(("Accept", "*/*")), ["x/y", "z/w"], "ua")
    assert sent.getall("Accept") == ["x/y", "z/w"]


def test_upstream_challenges_and_identity_are_not_relayed() -> None:
    """WWW-Authenticate, Set-Cookie and docker-ratelimit-source stay behind the gateway."""
    upstream = proxy(
        ("Content-Type", "application/json"),
        ("Docker-Content-Digest", "sha256:abc"),
        ("WWW-Authenticate", 'Bearer realm="https://auth/token"'),
        ("Set-Cookie", "x=1"),
        ("Docker-Ratelimit-Source", "192.0.2.1"),
        ("RateLimit-Remaining", "20;w=21600"),
        ("Transfer-Encoding", "chunked"),
        ("Retry-After", "30"),
    )
    relayed = caller_response_headers(upstream)
    assert relayed["Docker-Content-Digest"] == "sha256:abc"
    assert relayed["Retry-After"] == "30"
    assert relayed["RateLimit-Remaining"] == "20;w=21600"
    for dropped in ("WWW-Authenticate", "Set-Cookie", "Docker-Ratelimit-Source",
                    "Transfer-Encoding"):  # fmt: skip
        assert dropped not in relayed
    assert relayed["Docker-Distribution-API-Version"] == "registry/2.0"


@pytest.mark.parametrize(
    ("link", "upstream_url", "caller_name", "ns", "expected"),
    [
        ('</v2/library/alpine/tags/list?last=b&n=2>; rel="next"', "https://r", "alpine", None,
         '</v2/alpine/tags/list?last=b&n=2>; rel="next"'),
        ('</v2/foo/bar/tags/list?n=1&last=a>; rel="next"', "https://gcr.io", "gcr.io/foo/bar",
         None, '</v2/gcr.io/foo/bar/tags/list?n=1&last=a>; rel="next"'),
        ('<https://r/v2/library/alpine/tags/list?n=1&last=a>; rel="next"', "https://r",
         "library/alpine", "docker.io",
         '</v2/library/alpine/tags/list?n=1&last=a&ns=docker.io>; rel="next"'),
        # an upstream mounted under a path prefix
        ('</mirror/v2/library/alpine/tags/list?n=1>; rel="next"', "https://m/mirror", "alpine",
         None, '</v2/alpine/tags/list?n=1>; rel="next"'),
        # links elsewhere are dropped, never relayed as they are
        ('<https://evil/v2/library/alpine/tags/list>; rel="next"', "https://r", "alpine", None,
         None),
        ('</v2/other/repo/tags/list>; rel="next"', "https://r", "alpine", None, None),
        ("garbage", "https://r", "alpine", None, None),
    ],
)  # fmt: skip
def test_link_rewriting(
    link: str, upstream_url: str, caller_name: str, ns: str | None, expected: str | None
) -> None:
    """Pagination links land in the gateway's own path space, with ns kept."""
    upstream_name = "library/alpine" if "alpine" in caller_name else "foo/bar"
    assert (
        rewrite_link(
            link,
            upstream_url=URL(upstream_url),
            upstream_name=upstream_name,
            caller_name=caller_name,
            ns=ns,
        )
        == expected
    )


@pytest.mark.parametrize(
    ("host", "domain"),
    [("registry-1.docker.io", "docker.io"), ("auth.docker.io", "docker.io"),
     ("gcr.io", "gcr.io"), ("a.b.example.co.uk", "example.co.uk"), ("127.0.0.1", "127.0.0.1")],
)  # fmt: skip
def test_registrable_domain(host: str, domain: str) -> None:
    """Hosts reduce to their registrable domain; an IP is its own."""
    assert registrable_domain(host) == domain


@pytest.mark.parametrize(
    ("realm", "upstream", "extra", "allowed"),
    [
        ("https://auth.docker.io/token", "https://registry-1.docker.io", (), True),
        ("https://ghcr.io/token", "https://ghcr.io", (), True),
        ("https://evil.example.com/token", "https://registry-1.docker.io", (), False),
        ("https://auth.example.com/t", "https://reg.other.io", ("auth.example.com",), True),
        ("https://auth.example.com:8443/t", "https://reg.other.io", ("auth.example.com:8443",),
         True),
        ("https://auth.example.com:8443/t", "https://reg.other.io", ("auth.example.com:9",),
         False),
        ("http://auth.docker.io/token", "https://registry-1.docker.io", (), False),  # downgrade
        ("http://127.0.0.2:9/token", "http://127.0.0.1:5000", (), False),
        ("http://127.0.0.1:9/token", "http://127.0.0.1:5000", (), True),
    ],
)  # fmt: skip
def test_credentials_allowed(realm: str, upstream: str, extra: tuple[str, ...],
                             allowed: bool) -> None:  # fmt: skip
    """SECURITY: credentials go only to the upstream's domain or listed realms, never downgraded."""
    assert credentials_allowed(URL(realm), URL(upstream), extra) is allowed
