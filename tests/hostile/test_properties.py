"""Generated hostile requests against a running gateway in each client auth mode.

Hypothesis generates names, references, digests, ``ns`` values, query strings, header values
(non-ASCII text and invalid UTF-8 bytes too, sent over a raw socket since HTTP clients refuse
them) and ``/token`` requests, and fires them at the gateways of conftest.py, which sit in
front of a real docker-registry. Whatever comes in, the gateway answers: no 5xx but an
upstream's 502/503/504, the OCI error envelope for every error under ``/v2/``, JSON for every
``/token`` error, an ``X-Request-ID`` on every answer, no traceback in the log, and
``/healthz`` answering within 100 ms throughout (99th percentile; none over 2.5 s).

The example counts keep the whole module to a few thousand requests (well under 2 minutes).
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.gateway_process import GatewayProcess
from tests.hostile.conftest import MODES, basic, log_problems
from tests.hostile.wire import HealthProbe, Reply, build, exchange

UPSTREAM_ERRORS = {502, 503, 504}
HEALTHZ_BUDGET = 0.1
HEALTHZ_WORST = 2.5


def bounded(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        # No shrinking: each step is a network round trip, and the first failing request
        # (printed as the falsifying example) is what a reader needs.
        phases=[Phase.explicit, Phase.generate],
        # `watched` spans all examples on purpose: one probe and one log check per test.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


@pytest.fixture(scope="module")
def bearer(gateways: dict[str, GatewayProcess]) -> str:
    """A real access token from the token-mode gateway (alice, pull on library/alpine)."""
    reply = exchange(gateways["token"].port, build("/token?scope=repository:alpine:pull",
                                                   headers={"Authorization": basic()}))  # fmt: skip
    assert reply.status == 200, reply
    return f"Bearer {reply.json()['token']}"


@dataclass
class Watched:
    """A gateway under test, and the request ids of error answers that were no envelope."""

    mode: str
    gateway: GatewayProcess
    unenveloped: list[str] = field(default_factory=list)

    def check(self, reply: Reply, path: bytes, method: str) -> None:
        """The properties every answer has, whatever was asked."""
        assert reply.status < 500 or reply.status in UPSTREAM_ERRORS, reply
        assert reply.headers.get("x-request-id"), reply
        if reply.status < 400 or method == "HEAD":
            return
        if path.startswith(b"/token"):
            body = reply.json()
            assert "errors" in body or "error" in body, reply
        elif path.startswith(b"/v2"):
            if reply.headers.get("content-type", "").startswith("application/json"):
                assert reply.envelope_codes(), reply
            else:  # only an upstream's own answer, relayed, may be something else
                self.unenveloped.append(reply.headers["x-request-id"])

    def relayed(self, request_id: str) -> bool:
        """Whether a gateway line for ``request_id`` shows a relayed upstream answer.

        Generated requests may carry the same X-Request-ID (a sane caller id is kept), so
        every line with the id is considered.
        """
        return any(
            entry.get("upstream") is not None and entry.get("error") is None
            for entry in self.gateway.log_lines()
            if entry.get("event") == "request_completed" and entry["request_id"] == request_id
        )


@pytest.fixture
def watched(
    gateways: dict[str, GatewayProcess], request: pytest.FixtureRequest
) -> Iterator[Watched]:
    """The mode's gateway, with /healthz probed during the test and the log checked after."""
    subject = Watched(request.param, gateways[request.param])
    with HealthProbe(subject.gateway.port) as probe:
        yield subject
    print(f"\n/healthz during {request.node.name}: {probe.summary()}")
    # The loop must never be held for seconds (as the scope flood held it) and 99% of probes
    # answer within the budget. On the shared 2-core machine single probes of ~0.6-1.2 s were
    # seen with p99 under 50 ms (cause not pinned down: scheduling or a slow log write).
    assert probe.latencies and probe.percentile(0.99) < HEALTHZ_BUDGET, probe.slow
    assert probe.worst < HEALTHZ_WORST, probe.slow
    assert log_problems(subject.gateway) == []
    assert [i for i in subject.unenveloped if not subject.relayed(i)] == []


# --- strategies ------------------------------------------------------------------------------

NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789._-/"
names = st.one_of(
    st.text(NAME_ALPHABET, max_size=60),
    st.sampled_from(
        ["alpine", "library/alpine", "gcr.io/library/alpine", "docker.io/alpine",
         "index.docker.io/library/alpine", "a" * 247, "a" * 248, "a/" * 130, "", "/", "..",
         "../../etc/passwd", "%2e%2e", "localhost:5000/x", "UPPER/case", "_catalog"]
    ),
    st.text(max_size=20),
)  # fmt: skip
LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
TAG_ALPHABET = LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ._-"
digests = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: f"sha256:{b.hex()}"),
    st.binary(min_size=64, max_size=64).map(lambda b: f"sha512:{b.hex()}"),
    st.builds(
        "{}:{}".format,
        st.text(LOWER_ALNUM + "+._-", min_size=1, max_size=8),
        st.text(TAG_ALPHABET + "=", max_size=70),
    ),
    st.text(max_size=80),
)
references = st.one_of(
    st.text(TAG_ALPHABET, min_size=1, max_size=130),
    st.sampled_from(["v1", "latest", ".", "..", "-x"]),
    digests,
)
ns_values = st.one_of(
    st.sampled_from(["docker.io", "gcr.io", "index.docker.io", "registry-1.docker.io",
                     "evil.example", "127.0.0.1:1", "", "DOCKER.IO"]),
    st.text(max_size=40),
)  # fmt: skip
# Header bytes: anything but the CR and LF that would end the field.
header_bytes = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
header_values = st.one_of(
    header_bytes, st.text(max_size=100).map(lambda t: t.encode("utf-8", "replace"))
)
methods = st.sampled_from(["GET", "GET", "GET", "HEAD", "HEAD", "POST", "PUT", "DELETE",
                           "PATCH", "OPTIONS"])  # fmt: skip


extra_header_names = st.lists(st.sampled_from(
    ["Accept", "X-Request-ID", "X-Forwarded-For", "X-Forwarded-Proto", "Expect", "Range",
     "If-None-Match", "Content-Type", "User-Agent", "Forwarded"]), max_size=4)  # fmt: skip
hosts = st.sampled_from(["gateway.test", "gcr.io", "evil.example", "[::1]:5000"])
endpoints = st.sampled_from(
    ["manifests/{ref}", "blobs/{digest}", "tags/list", "referrers/{digest}", "",
     "blobs/uploads/", "other/{ref}"]
)  # fmt: skip


def quote(text: str) -> str:
    return urllib.parse.quote(text, safe="/:@")


@st.composite
def v2_targets(draw: st.DrawFn) -> bytes:
    """A /v2/ request target: an endpoint over a generated name, and maybe a query."""
    name = quote(draw(names))
    endpoint = draw(endpoints)
    path = f"/v2/{name}/" + endpoint.format(
        ref=quote(draw(references)), digest=quote(draw(digests))
    )
    query: list[tuple[str, str]] = []
    if draw(st.booleans()):
        query.append(("ns", draw(ns_values)))
    if endpoint == "tags/list" and draw(st.booleans()):
        query += [("n", draw(st.text("0123456789-x", max_size=12))), ("last", draw(st.text()))]
    target = path + ("?" + urllib.parse.urlencode(query) if query else "")
    if draw(st.integers(0, 9)) == 0:  # raw, unencoded bytes in the request target
        target += draw(st.binary(max_size=30)).decode("latin-1")
    return (
        target.encode("latin-1", "replace")
        .replace(b" ", b"%20")
        .replace(b"\r", b"")[:4000]
        .replace(b"\n", b"")
    )


@functools.cache
def authorization(mode: str, token: str) -> st.SearchStrategy[bytes | None]:
    valid = {"none": basic(), "basic": basic(), "token": token}[mode]
    return st.one_of(
        st.none(),
        st.just(valid.encode()),
        st.builds(lambda b: b"Basic " + b, header_bytes),
        st.builds(lambda b: b"Bearer " + b, header_bytes),
        st.builds(lambda v: valid.encode()[: len(valid) // 2] + v, header_bytes),
        header_values,
    )


@st.composite
def v2_requests(draw: st.DrawFn, mode: str, token: str) -> tuple[bytes, str, bytes]:
    target = draw(v2_targets())
    method = draw(methods)
    headers: list[tuple[str, bytes]] = []
    auth = draw(authorization(mode, token))
    if auth is not None:
        headers.append(("Authorization", auth))
    for name in draw(extra_header_names):
        headers.append((name, draw(header_values)))
    host = draw(hosts)
    return build(target, method=method, headers=headers, host=host), method, target


@st.composite
def token_gets(draw: st.DrawFn) -> tuple[bytes, bytes]:
    params: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.sampled_from(["scope", "service", "account", "offline_token", "x"]))
        value = draw(st.one_of(
            st.sampled_from(["repository:alpine:pull", "registry-gateway",
                             "repository:gcr.io/library/alpine:pull,push", "registry:catalog:*"]),
            st.text(max_size=60),
        ))  # fmt: skip
        params.append((key, value))
    query = urllib.parse.urlencode(params)
    if draw(st.booleans()):  # percent-escapes that decode to invalid UTF-8
        query += "&scope=" + "".join(f"%{b:02x}" for b in draw(st.binary(max_size=20)))
    target = f"/token?{query}".encode()
    headers: list[tuple[str, bytes]] = []
    auth = draw(st.one_of(st.none(), st.just(basic().encode()), header_values,
                          st.builds(lambda b: b"Basic " + b, header_bytes)))  # fmt: skip
    if auth is not None:
        headers.append(("Authorization", auth))
    return build(target, headers=headers), target


@st.composite
def token_posts(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        fields: list[tuple[str, str]] = []
        grant = draw(st.sampled_from(["password", "refresh_token", "client_credentials", ""]))
        fields.append(("grant_type", grant))
        fields.append(("username", draw(st.sampled_from(["alice", "", "bob"]) | st.text())))
        fields.append(("password", draw(st.sampled_from(["alice-pw", ""]) | st.text())))
        fields += [("scope", draw(st.text(max_size=80))) for _ in range(draw(st.integers(0, 40)))]
        if draw(st.booleans()):
            fields.append(("refresh_token", draw(st.text(max_size=200))))
        if draw(st.booleans()):
            fields.append(("access_type", "offline"))
        if draw(st.booleans()):
            fields.append(("service", draw(st.text(max_size=30))))
        body = urllib.parse.urlencode(fields).encode()
    else:
        body = draw(st.binary(max_size=2000))
    content_type = draw(st.one_of(
        st.just(b"application/x-www-form-urlencoded"),
        st.builds(lambda c: b"application/x-www-form-urlencoded; charset=" + c, header_bytes),
        header_values,
    ))  # fmt: skip
    return build("/token", method="POST", headers=[("Content-Type", content_type)], body=body)


# --- properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("watched", MODES, indirect=True)
@given(data=st.data())
@bounded(300)
def test_v2_requests_never_5xx_and_always_enveloped(
    watched: Watched, bearer: str, data: st.DataObject
) -> None:
    """Generated /v2/ requests get no 5xx of the gateway's own and errors in the envelope."""
    request, method, target = data.draw(v2_requests(watched.mode, bearer))
    reply = exchange(watched.gateway.port, request, head_only=method == "HEAD")
    watched.check(reply, target, method)


@pytest.mark.parametrize("watched", ["token"], indirect=True)
@given(request=token_gets())
@bounded(300)
def test_token_get_never_5xx(watched: Watched, request: tuple[bytes, bytes]) -> None:
    """Generated GET /token query strings and credentials get a token or a JSON 4xx."""
    raw, target = request
    watched.check(exchange(watched.gateway.port, raw), target, "GET")


@pytest.mark.parametrize("watched", ["token"], indirect=True)
@given(request=token_posts())
@bounded(400)
def test_token_post_never_5xx(watched: Watched, request: bytes) -> None:
    """Generated POST /token forms (and raw bodies) get a token or an RFC 6749 JSON 4xx."""
    watched.check(exchange(watched.gateway.port, request), b"/token", "POST")


@pytest.mark.parametrize("watched", MODES, indirect=True)
@given(name=st.binary(min_size=1, max_size=40), value=header_bytes)
@bounded(150)
def test_raw_header_bytes_never_5xx(watched: Watched, name: bytes, value: bytes) -> None:
    """Any header name and value bytes, even ones no HTTP client sends, get a 4xx at worst."""
    name = name.replace(b"\r", b"").replace(b"\n", b"").replace(b":", b"") or b"X"
    request = build(b"/v2/library/alpine/manifests/v1", headers=[(name, value)])
    watched.check(
        exchange(watched.gateway.port, request), b"/v2/library/alpine/manifests/v1", "GET"
    )
