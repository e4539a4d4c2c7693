"""gateway.access.grants: the /token form grammar and the bounds on a token request."""

from __future__ import annotations

import pytest

from gateway.access.grants import (
    MAX_FORM_BYTES,
    MAX_SCOPES,
    BadTokenRequest,
    clip,
    parse_token_form,
    requested_scopes,
)
from gateway.oci.scope import Scope


@pytest.mark.parametrize(
    ("body", "charset", "fields", "scopes"),
    [
        (b"grant_type=password&username=alice&password=pw", None,
         {"grant_type": "password", "username": "alice", "password": "pw"}, ()),
        (b"username=z%C3%B6e&password=p%26w", "UTF-8", {"username": "zöe", "password": "p&w"}, ()),
        (b"username=z\xc3\xb6e", "utf8", {"username": "zöe"}, ()),
        (b"scope=a&scope=b+c&username=x&username=y", "us-ascii", {"username": "x"}, ("a", "b c")),
        (b"password=", None, {"password": ""}, ()),
        (b"", None, {}, ()),
    ],
)  # fmt: skip
def test_parse_token_form_accepts(
    body: bytes, charset: str | None, fields: dict[str, str], scopes: tuple[str, ...]
) -> None:
    """UTF-8 forms parse; the first value of a field wins; every scope is kept."""
    form = parse_token_form(body, charset)
    assert dict(form.fields) == fields and form.scopes == scopes


@pytest.mark.parametrize(
    ("body", "charset", "problem"),
    [
        (b"password=%ff%fe", None, "not valid UTF-8"),
        (b"password=\xff", None, "not valid UTF-8"),
        (b"username=%c3%28", None, "not valid UTF-8"),
        (b"password=pw", "latin-9", "unsupported charset"),
        (b"password=pw", "utf-16", "unsupported charset"),
        (b"a=b&" * 70, None, "more than 64 fields"),
        (b"x" * (MAX_FORM_BYTES + 1), None, "larger than"),
    ],
)
def test_parse_token_form_refuses(body: bytes, charset: str | None, problem: str) -> None:
    """Undecodable, oversized or over-many-field forms are BadTokenRequest (invalid_request)."""
    with pytest.raises(BadTokenRequest) as refused:
        parse_token_form(body, charset)
    assert problem in refused.value.description and refused.value.error == "invalid_request"


def test_form_password_never_in_repr() -> None:
    """A parsed form's repr shows no field values (a password stays out of logs)."""
    assert "hunter2" not in repr(parse_token_form(b"password=hunter2", None))


def test_requested_scopes_bounds() -> None:
    """At most MAX_SCOPES scopes, space-separated or repeated, each at most 512 characters."""
    values = ["repository:a:pull repository:b:push", *[f"repository:r{i}:pull" for i in range(30)]]
    assert requested_scopes(values)[:2] == [
        Scope("repository", "a", ("pull",)),
        Scope("repository", "b", ("push",)),
    ]
    with pytest.raises(BadTokenRequest, match="at most 32"):
        requested_scopes([*values, "repository:one-more:pull"])
    assert len(requested_scopes(values)) == MAX_SCOPES
    with pytest.raises(BadTokenRequest, match="longer than 512"):
        requested_scopes(["repository:" + "n" * 600 + ":pull"])


def test_clip_marks_what_it_cut() -> None:
    """clip keeps short values and cuts long ones to the limit, saying how long they were."""
    assert clip("short") == "short"
    assert clip("x" * 1000, 10) == "xxxxxxxxxx...(1000 chars)"
