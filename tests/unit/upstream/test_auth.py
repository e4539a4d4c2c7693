"""gateway.upstream.auth: every branch of the upstream auth flow, as a table, without a server.

A scripted driver answers the flow's steps (replies, tokens, re-reads) in order and records
each step as a short line: ``send <authorization>``, ``token <scope> as <who>``, ``reread``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from multidict import CIMultiDict
from yarl import URL

from gateway.credentials.base import UpstreamCredentials
from gateway.errors import UpstreamAuthFailed, UpstreamError, UpstreamUnreachable
from gateway.oci.challenge import Challenge
from gateway.secret import Secret
from gateway.settings import UpstreamSettings
from gateway.upstream.auth import (
    Exchange,
    FetchToken,
    Reply,
    Reread,
    Send,
    Token,
    UpstreamRequest,
    auth_flow,
    token_request,
)
from gateway.upstream.tokens import TokenCache

UPSTREAM_URL = URL("https://registry.example.com")
REALM = "https://auth.example.com/token"
SCOPE = "repository:team/app:pull"
ROBOT = UpstreamCredentials("robot", Secret("pw-1"))
ROBOT_ROTATED = UpstreamCredentials("robot", Secret("pw-2"))
STATIC = UpstreamCredentials(token=Secret("static-token"))


def upstream(**extra: Any) -> UpstreamSettings:
    return UpstreamSettings("registry.example.com", UPSTREAM_URL, **extra)


def request(**extra: Any) -> UpstreamRequest:
    return UpstreamRequest(
        upstream(**extra),
        "GET",
        UPSTREAM_URL / "v2/team/app/manifests/1.0",
        CIMultiDict(),
        scopes=(SCOPE,),
        tenant=None,
        route="manifest",
    )


def reply(status: int, *challenges: str, location: str | None = None) -> Reply:
    return Reply(status, UPSTREAM_URL / "v2/team/app/manifests/1.0", challenges, location)


BEARER = f'Bearer realm="{REALM}",service="registry.example.com",scope="{SCOPE}"'
BASIC = 'Basic realm="registry"'
OK, BEARER_401, BASIC_401 = reply(200), reply(401, BEARER), reply(401, BASIC)
DENIED_403 = reply(403)


def fetched(value: str) -> Token:
    return Token(Secret(value), "fetched")


def cached(value: str) -> Token:
    return Token(Secret(value), "cached")


@dataclass
class Script:
    """The driver's side: answers consumed in order, every step recorded."""

    replies: list[Reply]
    tokens: list[Token | UpstreamError] = field(default_factory=list)
    rereads: list[Reread.Result] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    fetches: list[FetchToken] = field(default_factory=list)

    def run(self, flow: Any) -> Reply:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Send):
                    self.sends.append(step)
                    self.steps.append(f"send {step.authorization or '-'}")
                    answer: Any = self.replies.pop(0)
                    # the driver reports what the request carried
                    answer = Reply(answer.status, answer.url, answer.challenges,
                                   answer.location, step.authorization)  # fmt: skip
                elif isinstance(step, FetchToken):
                    self.fetches.append(step)
                    who = step.key.identity
                    self.steps.append(f"token {step.key.scope} as {who}")
                    answer = self.tokens.pop(0)
                    if isinstance(answer, UpstreamError):
                        step = flow.throw(answer)
                        continue
                else:
                    self.steps.append("reread")
                    answer = self.rereads.pop(0)
                step = flow.send(answer)
        except StopIteration as stop:
            assert not (self.replies or self.tokens or self.rereads), "unused answers"
            result: Reply = stop.value
            return result


def warm(tokens: TokenCache, token: str | None = None) -> TokenCache:
    """The upstream's Bearer challenge is known; optionally a token is cached for it."""
    tokens.remember_challenge("registry.example.com", Challenge("bearer", {"realm": REALM}))
    if token is not None:
        key = token_request(request(), Challenge("bearer", {"realm": REALM}), [SCOPE], None).key
        tokens.tokens.put(key, Secret(token), 300)
    return tokens


@dataclass(frozen=True)
class Case:
    name: str
    credentials: UpstreamCredentials | None
    script: Script
    steps: list[str]
    status: int
    auth: str
    tokens: TokenCache = field(default_factory=TokenCache)
    retried: bool = False


ROBOT_ID = ROBOT.identity
CASES = [
    Case("cold anonymous, open upstream: one plain send", None,
         Script([OK]), ["send -"], 200, "anonymous"),
    Case("cold anonymous, Bearer challenge: fetch a token, retry once", None,
         Script([BEARER_401, OK], [fetched("t1")]),
         ["send -", f"token {SCOPE} as anonymous", "send Bearer t1"], 200, "fetched"),
    Case("cold with Basic credentials: the token request carries them", ROBOT,
         Script([BEARER_401, OK], [fetched("t1")]),
         ["send -", f"token {SCOPE} as {ROBOT_ID}", "send Bearer t1"], 200, "fetched"),
    Case("warm: the cached token goes pre-emptively, one send", None,
         Script([OK], [cached("t0")]),
         [f"token {SCOPE} as anonymous", "send Bearer t0"], 200, "cached",
         tokens=warm(TokenCache(), "t0")),
    Case("warm token refused: dropped, a fresh one fetched, retried once", None,
         Script([BEARER_401, OK], [cached("t0"), fetched("t1")]),
         [f"token {SCOPE} as anonymous", "send Bearer t0",
          f"token {SCOPE} as anonymous", "send Bearer t1"], 200, "fetched",
         tokens=warm(TokenCache(), "t0")),
    Case("a token fetched just now and refused again is final (no second fetch)", None,
         Script([BEARER_401, BEARER_401], [fetched("t1")]),
         ["send -", f"token {SCOPE} as anonymous", "send Bearer t1"], 401, "fetched"),
    Case("static token: sent as Bearer, a challenge never triggers a fetch", STATIC,
         Script([BEARER_401], rereads=[Reread.Result(False)]),
         ["send Bearer static-token", "reread"], 401, "static"),
    Case("Basic challenge: Basic credentials sent once", ROBOT,
         Script([BASIC_401, OK]), ["send -", f"send {ROBOT.basic_header()}"], 200, "basic"),
    Case("Basic challenge without credentials: the 401 is final", None,
         Script([BASIC_401]), ["send -"], 401, "anonymous"),
    Case("upstream asked for Basic before: Basic goes pre-emptively", ROBOT,
         Script([OK]), [f"send {ROBOT.basic_header()}"], 200, "basic",
         tokens=TokenCache()),  # remember_challenge(basic) applied in the test below
    Case("refused and the store has nothing newer: the refusal stands", ROBOT,
         Script([DENIED_403], rereads=[Reread.Result(False)]),
         ["send -", "reread"], 403, "anonymous"),
    Case("refused, re-read rotated credentials: tokens dropped, one more attempt", ROBOT,
         Script([BEARER_401, BEARER_401, OK], [fetched("t1"), fetched("t2")],
                [Reread.Result(True, ROBOT_ROTATED)]),
         ["send -", f"token {SCOPE} as {ROBOT_ID}", "send Bearer t1", "reread",
          f"token {SCOPE} as {ROBOT_ROTATED.identity}", "send Bearer t2"], 200, "fetched",
         retried=True),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_auth_flow_table(case: Case) -> None:
    """Each row: the steps the flow asks for, the final status, and how it authenticated."""
    if case.name.startswith("upstream asked for Basic"):
        case.tokens.remember_challenge("registry.example.com", Challenge("basic", {}))
    exchange = Exchange()

    final = case.script.run(auth_flow(request(), case.credentials, case.tokens, exchange))

    assert case.script.steps == case.steps
    assert final.status == case.status
    assert exchange.auth == case.auth
    assert exchange.retried is case.retried


def test_a_refused_cached_token_is_dropped_from_the_cache() -> None:
    """After a 401 for the cached token, it is gone: the next request cannot reuse it."""
    tokens = warm(TokenCache(), "t0")
    script = Script([BEARER_401, OK], [cached("t0"), fetched("t1")])

    script.run(auth_flow(request(), None, tokens, Exchange()))

    assert tokens.peek(script.fetches[0].key) is None


def test_a_token_replaced_meanwhile_is_kept() -> None:
    """A refused token that a concurrent request already replaced does not evict the new one."""
    tokens = warm(TokenCache(), "t0")
    key = token_request(request(), Challenge("bearer", {"realm": REALM}), [SCOPE], None).key
    flow = auth_flow(request(), None, tokens, Exchange())
    assert isinstance(next(flow), FetchToken)
    assert isinstance(flow.send(cached("t0")), Send)
    tokens.tokens.put(key, Secret("t-new"), 300)  # another request refreshed it meanwhile

    assert isinstance(flow.send(Reply(401, UPSTREAM_URL, (BEARER,), None, "Bearer t0")),
                      FetchToken)  # fmt: skip
    assert tokens.peek(key) == Secret("t-new")


def test_token_service_refusing_credentials_rereads_them() -> None:
    """The token service refusing our credentials leads to a re-read; no newer: it is raised."""
    script = Script([BEARER_401], [UpstreamAuthFailed()], [Reread.Result(False)])

    with pytest.raises(UpstreamAuthFailed):
        script.run(auth_flow(request(), ROBOT, TokenCache(), Exchange()))
    assert script.steps == ["send -", f"token {SCOPE} as {ROBOT_ID}", "reread"]


def test_token_service_refusing_an_anonymous_request_is_raised_at_once() -> None:
    """Without credentials there is nothing to re-read: the refusal propagates."""
    script = Script([BEARER_401], [UpstreamAuthFailed()])

    with pytest.raises(UpstreamAuthFailed):
        script.run(auth_flow(request(), None, TokenCache(), Exchange()))
    assert script.steps == ["send -", f"token {SCOPE} as anonymous"]


@pytest.mark.parametrize(
    ("realm", "token_realms", "with_credentials"),
    [
        ("https://auth.example.com/token", (), True),  # same registrable domain
        ("https://registry.example.com/token", (), True),  # the upstream itself
        ("https://login.other.org/token", (), False),  # another domain: anonymous request
        ("https://login.other.org/token", ("login.other.org",), True),  # listed realm
        ("http://auth.example.com/token", (), False),  # never downgraded to plain HTTP
    ],
)
def test_which_realm_may_receive_the_credentials(
    realm: str, token_realms: tuple[str, ...], with_credentials: bool
) -> None:
    """Credentials go to the upstream's domain or a listed realm; elsewhere anonymously."""
    fetch = token_request(
        request(token_realms=token_realms), Challenge("bearer", {"realm": realm}), [SCOPE], ROBOT
    )
    assert (fetch.credentials is ROBOT) is with_credentials
    assert fetch.realm_refused is not with_credentials
    assert fetch.key.identity == (ROBOT_ID if with_credentials else "anonymous")


def test_a_realm_that_is_no_http_url_is_refused() -> None:
    """A challenge pointing at a non-HTTP realm is an upstream auth failure, not a request."""
    with pytest.raises(UpstreamAuthFailed):
        token_request(
            request(), Challenge("bearer", {"realm": "file:///etc/passwd"}), [SCOPE], None
        )


def redirect(status: int, location: str) -> Reply:
    return reply(status, location=location)


@pytest.mark.parametrize(
    ("status", "location", "authorization", "method"),
    [
        (307, "https://cdn.example.net/blob?sig=1", None, "GET"),  # another host: no credentials
        (302, "/v2/team/app/blobs/other", "Bearer t0", "GET"),  # same origin keeps them
        (307, "http://registry.example.com/x", None, "GET"),  # scheme differs: another origin
        (303, "https://cdn.example.net/blob", None, "GET"),
    ],
)
def test_redirect_hops_carry_credentials_only_to_the_same_origin(
    status: int, location: str, authorization: str | None, method: str
) -> None:
    """redirects: follow: the hop gets Authorization only on the upstream's own origin."""
    script = Script([redirect(status, location), OK], [cached("t0")])

    final = script.run(auth_flow(request(), None, warm(TokenCache(), "t0"), Exchange()))

    hop = script.sends[-1]
    assert final.status == 200
    assert hop.url == UPSTREAM_URL.join(URL(location))
    assert hop.authorization == authorization
    assert hop.method == method
    assert hop.same_origin is (authorization is not None)


def test_redirects_stop_after_five_hops() -> None:
    """A sixth redirect is an upstream failure, not an endless loop."""
    hops = [redirect(302, f"/v2/hop/{n}") for n in range(6)]
    with pytest.raises(UpstreamUnreachable):
        Script(hops).run(auth_flow(request(), None, TokenCache(), Exchange()))


def test_redirect_to_a_non_http_scheme_is_refused() -> None:
    """Location: file:///... is never followed."""
    with pytest.raises(UpstreamUnreachable):
        Script([redirect(302, "file:///etc/passwd")]).run(
            auth_flow(request(), None, TokenCache(), Exchange())
        )


def test_redirects_pass_mode_returns_the_redirect() -> None:
    """redirects: pass: the 3xx is the final reply, for the caller to follow."""
    final = Script([redirect(307, "https://cdn.example.net/b")]).run(
        auth_flow(request(redirects="pass"), None, TokenCache(), Exchange())
    )
    assert final.status == 307


async def _stream() -> Any:
    yield b"layer bytes"


@pytest.mark.parametrize(
    ("tokens", "answer", "sent"),
    [
        (TokenCache(), BEARER_401, "-"),  # cold: the 401 is final, no token, no resend
        (warm(TokenCache(), "t0"), DENIED_403, "Bearer t0"),  # refused: no re-read either
        (TokenCache(), redirect(307, "/v2/elsewhere"), "-"),  # redirect: not followed
    ],
    ids=["401", "403", "redirect"],
)
def test_a_streamed_body_is_sent_once_and_its_first_answer_is_final(
    tokens: TokenCache, answer: Reply, sent: str
) -> None:
    """A push body streamed from the caller cannot be replayed: one Send, whatever comes back."""
    streamed = UpstreamRequest(
        upstream(), "PATCH", UPSTREAM_URL / "v2/team/app/blobs/uploads/u", CIMultiDict(),
        scopes=(SCOPE,), tenant=None, route="blob", body=_stream(),
    )  # fmt: skip
    script = Script([answer], [cached("t0")] if sent != "-" else [])

    final = script.run(auth_flow(streamed, ROBOT, tokens, Exchange()))

    assert final.status == answer.status
    assert [s for s in script.steps if s.startswith("send")] == [f"send {sent}"]
    assert "reread" not in script.steps


def test_a_bytes_body_is_replayed_after_a_challenge() -> None:
    """A manifest PUT's bytes can go twice: the 401 is answered with a token and sent again."""
    put = UpstreamRequest(
        upstream(), "PUT", UPSTREAM_URL / "v2/team/app/manifests/1.0", CIMultiDict(),
        scopes=(SCOPE,), tenant=None, route="manifest", body=b"{}",
    )  # fmt: skip
    script = Script([BEARER_401, OK], [fetched("t1")])

    assert script.run(auth_flow(put, None, TokenCache(), Exchange())).status == 200
    assert script.steps == ["send -", f"token {SCOPE} as anonymous", "send Bearer t1"]
