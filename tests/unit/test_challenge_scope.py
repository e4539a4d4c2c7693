"""WWW-Authenticate challenges and Docker token scopes."""

from __future__ import annotations

import pytest

from gateway.oci.challenge import find_challenge, parse_challenges
from gateway.oci.scope import Scope, parse_scope, parse_scopes, pull_scope


def test_parses_docker_hub_bearer_challenge() -> None:
    """Realm, service and scope come out of distribution's challenge (token.md example)."""
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    [challenge] = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.service == "registry.docker.io"
    assert challenge.scopes == ["repository:samalba/my-app:pull,push"]


def test_space_separated_scopes_are_split() -> None:
    """Several scopes share one scope parameter, separated by spaces."""
    [challenge] = parse_challenges('Bearer realm="r",scope="repository:a:pull repository:b:pull"')
    assert challenge.scopes == ["repository:a:pull", "repository:b:pull"]


def test_basic_challenge_and_case_insensitive_scheme() -> None:
    """Scheme and parameter names are case-insensitive."""
    [challenge] = parse_challenges('BASIC REALM="Registry Realm"')
    assert challenge.scheme == "basic"
    assert challenge.realm == "Registry Realm"


def test_multiple_challenges_in_one_header() -> None:
    """Comma-separated challenges are all found."""
    challenges = parse_challenges('Basic realm="a", Bearer realm="https://t/token",service="s"')
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[1].service == "s"


def test_quoted_escapes_and_unquoted_tokens() -> None:
    """Quoted-string escapes are undone; token values need no quotes."""
    [challenge] = parse_challenges(r'Bearer realm="https://x/\"q\"",service=plain')
    assert challenge.realm == 'https://x/"q"'
    assert challenge.service == "plain"


@pytest.mark.parametrize("junk", ["", "   ", ",,,", '="x"', "Bearer realm"])
def test_junk_never_raises(junk: str) -> None:
    """Malformed headers yield what could be read, never an exception."""
    for challenge in parse_challenges(junk):
        assert challenge.realm is None


def test_find_challenge_across_header_lines() -> None:
    """The first challenge of a scheme is found across several header lines."""
    found = find_challenge(['Basic realm="b"', 'Bearer realm="t"'], "bearer")
    assert found is not None and found.realm == "t"
    assert find_challenge(['Basic realm="b"'], "bearer") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("repository:library/alpine:pull", Scope("repository", "library/alpine", ("pull",))),
        ("repository:a/b:push,pull", Scope("repository", "a/b", ("pull", "push"))),
        # a resource name may hold host:port, so actions come from the right (scope.md)
        ("repository:localhost:5000/a:pull", Scope("repository", "localhost:5000/a", ("pull",))),
        ("repository(plugin):a:pull", Scope("repository", "a", ("pull",))),
        ("registry:catalog:*", Scope("registry", "catalog", ("*",))),
        ("nocolon", None),
        ("repository::pull", None),
        (":a:pull", None),
    ],
)
def test_scope_grammar(text: str, expected: Scope | None) -> None:
    """Scopes parse type from the left and actions from the right."""
    assert parse_scope(text) == expected


def test_scope_round_trip_and_pull_scope() -> None:
    """A scope renders back to its wire form; pull_scope builds the pull scope."""
    assert str(pull_scope("library/alpine")) == "repository:library/alpine:pull"
    assert [str(s) for s in parse_scopes(["repository:a:pull repository:b:pull,push", "x"])] == [
        "repository:a:pull",
        "repository:b:pull,push",
    ]
