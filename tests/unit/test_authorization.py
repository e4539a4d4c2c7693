"""gateway.oci.authorization: the Authorization header grammar, over every hostile value."""

from __future__ import annotations

import base64

import pytest

from gateway.oci.authorization import (
    BasicCredentials,
    decode_basic,
    parse_basic,
    parse_bearer,
    scheme_of,
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# aiohttp hands invalid UTF-8 over surrogate-escaped: b"\xff" arrives as "\udcff".
SURROGATE = b"\xff\xfe".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Basic " + b64(b"alice:pw"), BasicCredentials("alice", "pw")),
        ("basic   " + b64(b"alice:pw") + "  ", BasicCredentials("alice", "pw")),
        ("Basic " + b64(b"alice:p:w"), BasicCredentials("alice", "p:w")),
        ("Basic " + b64("zoë:pässwörd".encode()), BasicCredentials("zoë", "pässwörd")),
        ("Basic " + b64(b":"), BasicCredentials("", "")),
        ("Basic " + b64(b"alice"), None),  # no colon
        ("Basic " + b64(b"alice:\xff\xfe"), None),  # decodes to invalid UTF-8
        ("Basic " + b64(b"ali\x00ce:pw"), None),  # control character (RFC 7617 §2)
        ("Basic " + b64(b"alice:pw\x7f"), None),
        ("Basic not base64!", None),
        ("Basic YWxpY2U6cHc", None),  # missing padding
        ("Basic ", None),
        ("Basic", None),
        ("Basic ééé", None),
        ("Basic " + SURROGATE, None),
        (SURROGATE + "Basic " + b64(b"alice:pw"), None),
        ("Bearer " + b64(b"alice:pw"), None),
        ("", None),
    ],
)
def test_parse_basic(value: str, expected: BasicCredentials | None) -> None:
    """Basic credentials parse only from the ASCII grammar and valid UTF-8 without controls."""
    assert parse_basic(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc-_~+/=", "abc-_~+/="),
        ("Bearer  token  ", "token"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer a b", None),
        ("Bearer jeton-é", None),
        ("Bearer " + SURROGATE, None),
        ("Bearer a=b", None),  # "=" only as trailing padding in a token68
        ("Basic abc", None),
        ("Bearer\tabc", None),
    ],
)
def test_parse_bearer(value: str, expected: str | None) -> None:
    """A bearer token is a token68 after the scheme; anything else is no token."""
    assert parse_bearer(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Basic x", "basic"), ("NEGOTIATE abc", "negotiate"), ("Bearer", "bearer"),
     ("B@d x", None), ("é x", None), ("", None)],
)  # fmt: skip
def test_scheme_of(value: str, expected: str | None) -> None:
    """The scheme is a token, lower-cased; non-token text has none."""
    assert scheme_of(value) == expected


def test_decode_basic_serves_config_auth_fields() -> None:
    """decode_basic reads the base64 ``auth`` of Docker config files the same way."""
    assert decode_basic(b64(b"robot:s3cret")) == BasicCredentials("robot", "s3cret")
    assert decode_basic("%%%") is None


def test_basic_credentials_hide_the_password() -> None:
    """The password never appears in repr (and so never in a log or an assertion message)."""
    credentials = BasicCredentials("alice", "hunter2")
    assert "hunter2" not in repr(credentials) and "alice" in repr(credentials)
    assert BasicCredentials("", "").empty and not credentials.empty
