"""Issue 9's hostile classes, one regression each, against real gateway processes.

Each answer is a 4xx of the right kind (401 with a challenge, 400 envelope, RFC 6749 JSON),
never a 500, and the gateway's log holds no traceback afterwards.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pytest

from tests.components.registry import Registry
from tests.gateway_process import GatewayProcess
from tests.hostile.conftest import basic, gateway_config, log_problems
from tests.hostile.wire import Reply, build, exchange

FORM = "application/x-www-form-urlencoded"


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def post_form(gateway: GatewayProcess, body: bytes, content_type: str = FORM) -> Reply:
    return exchange(
        gateway.port, build("/token", method="POST", headers={"Content-Type": content_type},
                            body=body)
    )  # fmt: skip


def assert_oauth_error(reply: Reply, error: str = "invalid_request") -> None:
    assert reply.status == 400, reply
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["error"] == error and isinstance(body["error_description"], str)


NON_ASCII_AUTHORIZATION = {
    "basic-utf8-text": "Basic ééàü".encode(),
    "basic-invalid-utf8": b"Basic \xff\xfe\xfd",
    "basic-decodes-to-invalid-utf8": b"Basic " + base64.b64encode(b"alice:\xff\xfe"),
    "basic-decodes-to-control-chars": b"Basic " + base64.b64encode(b"ali\x00ce:pw"),
    "bearer-invalid-utf8": b"Bearer \xff\xfe\xfd",
    "bearer-utf8-text": "Bearer jeton-é".encode(),
    "bearer-jwt-segment-invalid-utf8": b"Bearer "
    + b64url(b'{"alg":"ES256","typ":"\xff"}')
    + b"."
    + b64url(b'{"sub":"\xfe"}')
    + b".c2ln",
    "scheme-invalid-utf8": b"\xff\xfeBasic YWxpY2U6YWxpY2UtcHc=",
}


@pytest.mark.parametrize("value", NON_ASCII_AUTHORIZATION.values(), ids=NON_ASCII_AUTHORIZATION)
@pytest.mark.parametrize("mode", ["basic", "token"])
def test_non_ascii_authorization_on_v2_is_401_with_challenge(
    gateways: dict[str, GatewayProcess], mode: str, value: bytes
) -> None:
    """Authorization values outside ASCII get 401 UNAUTHORIZED and the mode's challenge."""
    gateway = gateways[mode]
    reply = exchange(gateway.port, build("/v2/", headers=[("Authorization", value)]))
    assert reply.status == 401, reply
    assert reply.envelope_codes() == ["UNAUTHORIZED"]
    scheme = "Basic" if mode == "basic" else "Bearer"
    assert reply.headers["www-authenticate"].startswith(scheme)
    assert log_problems(gateway) == []


@pytest.mark.parametrize("value", NON_ASCII_AUTHORIZATION.values(), ids=NON_ASCII_AUTHORIZATION)
def test_non_ascii_authorization_on_get_token_is_401_with_basic_challenge(
    gateways: dict[str, GatewayProcess], value: bytes
) -> None:
    """GET /token with an Authorization value outside ASCII is 401 with the Basic challenge."""
    gateway = gateways["token"]
    reply = exchange(gateway.port, build("/token?service=registry-gateway",
                                         headers=[("Authorization", value)]))  # fmt: skip
    assert reply.status == 401, reply
    assert reply.envelope_codes() == ["UNAUTHORIZED"]
    assert reply.headers["www-authenticate"].startswith("Basic")
    assert log_problems(gateway) == []


def test_non_ascii_authorization_does_not_break_valid_logins(
    gateways: dict[str, GatewayProcess],
) -> None:
    """After hostile values, alice's valid Basic credentials still open /v2/ and /token."""
    assert exchange(gateways["basic"].port, build("/v2/", headers={"Authorization": basic()})
                    ).status == 200  # fmt: skip
    reply = exchange(gateways["token"].port, build("/token", headers={"Authorization": basic()}))
    assert reply.status == 200 and reply.json()["token"]


@pytest.mark.parametrize(
    "body",
    [
        b"grant_type=password&username=alice&password=%ff%fe",
        b"grant_type=password&username=%c3%28&password=x",
        b"grant_type=password&username=alice&password=\xff\xfe",
        b"grant_type=refresh_token&refresh_token=%ff.%fe.%fd",
        b"scope=repository%3A%ff%3Apull&grant_type=password&username=alice&password=alice-pw",
    ],
    ids=["percent-password", "percent-user", "raw-bytes", "refresh-token", "scope"],
)
def test_token_form_invalid_utf8_is_400_invalid_request(
    gateways: dict[str, GatewayProcess], body: bytes
) -> None:
    """A POST /token form that is not UTF-8 is 400 invalid_request, never a 500."""
    assert_oauth_error(post_form(gateways["token"], body))
    assert log_problems(gateways["token"]) == []


@pytest.mark.parametrize("charset", ["latin-9", "utf-16", "x-unknown", '"; drop'])
def test_token_form_invalid_utf8_unknown_charset_is_400(
    gateways: dict[str, GatewayProcess], charset: str
) -> None:
    """A form declaring any charset but UTF-8 (or ASCII) is 400 invalid_request."""
    body = b"grant_type=password&username=alice&password=alice-pw"
    reply = post_form(gateways["token"], body, f"{FORM}; charset={charset}")
    assert_oauth_error(reply)
    assert log_problems(gateways["token"]) == []


def test_token_form_invalid_utf8_leaves_utf8_forms_working(
    gateways: dict[str, GatewayProcess],
) -> None:
    """A UTF-8 form with charset=utf-8 still logs in and gets a token for its scope."""
    body = b"grant_type=password&username=alice&password=alice-pw&scope=repository%3Aalpine%3Apull"
    reply = post_form(gateways["token"], body, f"{FORM}; charset=UTF-8")
    assert reply.status == 200, reply
    assert reply.json()["scope"] == "repository:alpine:pull"


def scopes_form(count: int, name_length: int = 8) -> bytes:
    pairs = [("grant_type", "password"), ("username", "alice"), ("password", "alice-pw")]
    pairs += [("scope", f"repository:{'n' * name_length}{i}:pull") for i in range(count)]
    return urllib.parse.urlencode(pairs).encode()


def test_token_scope_flood_large_form_is_400_at_once(gateways: dict[str, GatewayProcess]) -> None:
    """Tens of thousands of scopes (a ~1 MiB form) are refused 400 before any of it is read."""
    body = scopes_form(30_000)
    assert len(body) > 900_000
    reply = post_form(gateways["token"], body)
    assert_oauth_error(reply)
    assert reply.seconds < 0.5, reply.seconds


def test_token_scope_flood_too_many_scopes_is_400(gateways: dict[str, GatewayProcess]) -> None:
    """More than 32 scopes in one small form, or in a GET query, are refused with 400."""
    assert_oauth_error(post_form(gateways["token"], scopes_form(33)))
    query = "&".join(f"scope=repository:r{i}:pull" for i in range(33))
    reply = exchange(gateways["token"].port, build(f"/token?{query}"))
    assert reply.status == 400 and reply.envelope_codes() == ["UNSUPPORTED"]


def test_token_scope_flood_token_larger_than_a_header_is_400(
    gateways: dict[str, GatewayProcess],
) -> None:
    """32 scopes on long names would make a token no client can send: 400, not the token."""
    reply = post_form(gateways["token"], scopes_form(32, name_length=240))
    assert_oauth_error(reply)
    assert "max_field_size" in reply.json()["error_description"]
    ok = post_form(gateways["token"], scopes_form(32))
    assert ok.status == 200 and len(ok.json()["scope"].split(" ")) == 32


def test_name_invalid_after_normalisation_is_400(gateways: dict[str, GatewayProcess]) -> None:
    """A one-component docker.io name of 248+ characters is NAME_INVALID once library/ is added."""
    gateway = gateways["none"]
    reply = exchange(gateway.port, build(f"/v2/{'a' * 248}/manifests/latest"))
    assert reply.status == 400 and reply.envelope_codes() == ["NAME_INVALID"]
    longest = exchange(gateway.port, build(f"/v2/{'a' * 247}/manifests/latest"))
    assert longest.status == 404, longest  # 255 with library/: valid, asked upstream
    assert log_problems(gateway) == []


@pytest.mark.parametrize("expect", ["something-else", "100-continue-please", "\xe9t\xe9"])
@pytest.mark.parametrize("mode", ["none", "token"])
def test_expect_header_other_than_100_continue_is_417_envelope(
    gateways: dict[str, GatewayProcess], mode: str, expect: str
) -> None:
    """Expect with anything but 100-continue gets 417 in the OCI envelope, with a request id."""
    gateway = gateways[mode]
    reply = exchange(gateway.port, build("/v2/library/alpine/manifests/v1",
                                         headers={"Expect": expect}))  # fmt: skip
    assert reply.status == 417, reply
    assert reply.envelope_codes() == ["UNSUPPORTED"]
    assert len(reply.headers["x-request-id"]) == 32
    assert log_problems(gateway) == []


def test_expect_header_100_continue_still_continues(gateways: dict[str, GatewayProcess]) -> None:
    """Expect: 100-continue is honoured: the request is served as without it."""
    reply = exchange(gateways["none"].port, build("/v2/library/alpine/manifests/v1",
                                                  headers={"Expect": "100-continue"}))  # fmt: skip
    assert reply.status == 200, reply
    assert json.loads(reply.body)["schemaVersion"] == 2


def test_audit_line_bounded_while_rate_limited(
    tmp_path: Path, registry_open: Registry, auth_dir: Path
) -> None:
    """Failed and rate-limited token requests with huge inputs write no line over 8 KiB."""
    config = gateway_config(registry_open, "token", auth_dir)
    config["clients"]["login_limit"] = {"failures": 2, "window": 60}
    with GatewayProcess.start(tmp_path / "audit", config) as gateway:
        huge_scope = "repository:" + "x" * 400 + ":pull"
        for _ in range(4):  # two wrong passwords, then rate limited
            form = urllib.parse.urlencode(
                [("grant_type", "password"), ("username", "alice" * 2000), ("password", "no"),
                 ("service", "s" * 5000)] + [("scope", huge_scope)] * 30
            ).encode()  # fmt: skip
            assert post_form(gateway, form).status in (400, 429)
            form = urllib.parse.urlencode(
                [("grant_type", "password"), ("username", "alice" * 2000), ("password", "no")]
                + [("scope", huge_scope)] * 30
            ).encode()
            assert post_form(gateway, form).status in (400, 429)
        big = post_form(gateway, b"grant_type=password&username=alice&password=x&scope=" +
                        b"s" * (1 << 20))  # fmt: skip
        assert big.status == 400
        query = "&".join([f"scope={huge_scope}"] * 15)
        reply = exchange(
            gateway.port, build(f"/token?{query}", headers={"Authorization": basic(password="no")})
        )
        assert reply.status == 429, reply
        lines = gateway.log_text().splitlines()
        decided = [line for line in lines if "token_decided" in line]
        assert decided, "the refused logins were audited"
        assert max(len(line) for line in lines) < 8192
        assert log_problems(gateway) == []
