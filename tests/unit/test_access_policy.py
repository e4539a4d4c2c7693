"""gateway.access.policy: rules over "<upstream>/<name>", principals, and token grants."""

from __future__ import annotations

import pytest

from gateway.access.policy import ANONYMOUS, Policy, candidate_targets
from gateway.oci.scope import Scope, parse_scopes
from gateway.routing import Router
from gateway.settings import AccessRule, ClientsSettings

CLIENTS = ClientsSettings(
    auth="token",
    groups={"ci": ("ci-bot", "dave")},
    tenants={"team-a": ("alice", "bob"), "team-b": ("carol",)},
    access=(
        AccessRule(("anonymous",), ("docker.io/library/*",), ("pull",)),
        AccessRule(("group:ci",), ("*",), ("pull",)),
        AccessRule(("alice",), ("gcr.io/team-a/*", "quay.io/a?c/x"), ("pull",)),
        AccessRule(("*",), ("ghcr.io/public/*",), ("pull",)),
        AccessRule(("carol",), ("private.example/*",), ("*",)),
        AccessRule(("erin",), ("private.example/*",), ("pull",)),
    ),
)
ROUTER = Router(
    upstreams=frozenset({"docker.io", "gcr.io", "quay.io", "ghcr.io", "private.example"}),
    hosts={},
    default="docker.io",
)
POLICY = Policy(CLIENTS, tenant_upstreams={"private.example"})


@pytest.mark.parametrize(
    ("user", "upstream", "name", "allowed"),
    [
        (None, "docker.io", "library/alpine", True),
        (None, "docker.io", "library/a/b", True),  # fnmatch `*` crosses "/"
        (None, "docker.io", "someone/alpine", False),
        (None, "gcr.io", "team-a/app", False),
        ("alice", "docker.io", "library/alpine", False),  # "anonymous" is not "everyone"
        ("alice", "gcr.io", "team-a/app", True),
        ("alice", "gcr.io", "team-b/app", False),
        ("alice", "quay.io", "abc/x", True),  # `?` is one character
        ("alice", "quay.io", "abbc/x", False),
        ("alice", "Gcr.io", "team-a/app", False),  # case-sensitive
        ("alice", "ghcr.io", "public/tool", True),  # "*" = any authenticated user
        (None, "ghcr.io", "public/tool", False),
        ("ci-bot", "gcr.io", "anything/at/all", True),  # group:ci
        ("dave", "docker.io", "library/alpine", True),
        ("mallory", "gcr.io", "team-a/app", False),
        ("carol", "private.example", "x/y", True),  # tenant team-b: per-tenant upstream ok
        ("ci-bot", "private.example", "x/y", False),  # allowed by group:ci, but no tenant
    ],
)
def test_verdict(user: str | None, upstream: str, name: str, allowed: bool) -> None:
    """Union of the rules that apply to the principal and whose globs match."""
    verdict = POLICY.verdict(POLICY.principal(user), upstream, name)
    assert verdict.permits("pull") is allowed, verdict.reason


def test_verdict_reasons_name_the_rules_or_the_missing_tenant() -> None:
    """The audit line says which rules matched, or why nothing did."""
    assert POLICY.verdict(POLICY.principal("dave"), "ghcr.io", "public/x").reason == (
        "clients.access[1,3]"
    )
    assert POLICY.verdict(ANONYMOUS, "gcr.io", "x").reason == "no rule matches"
    assert "no tenant" in POLICY.verdict(POLICY.principal("ci-bot"), "private.example", "x").reason


def test_principal_carries_tenant_and_groups() -> None:
    """A user's tenant and groups come from clients.tenants and clients.groups."""
    alice, dave = POLICY.principal("alice"), POLICY.principal("dave")
    assert (alice.tenant, alice.groups) == ("team-a", frozenset())
    assert (dave.tenant, dave.groups) == (None, frozenset({"ci"}))
    assert ANONYMOUS.label == "anonymous" and not ANONYMOUS.authenticated


def test_without_rules_users_pull_everything_and_anonymous_nothing() -> None:
    """CONTRACT.md: basic/token with no access rules."""
    policy = Policy(ClientsSettings(auth="basic"))
    assert policy.verdict(policy.principal("anyone"), "gcr.io", "x/y").permits("pull")
    assert not policy.verdict(ANONYMOUS, "docker.io", "library/alpine").permits("pull")


def test_only_listed_actions_are_allowed() -> None:
    """A pull rule does not allow push; a "*" rule allows any action."""
    assert not POLICY.verdict(POLICY.principal("alice"), "gcr.io", "team-a/x").permits("push")
    assert POLICY.verdict(POLICY.principal("carol"), "private.example", "x").permits("push")


def test_candidate_targets_cover_every_ns_and_the_plain_route() -> None:
    """A scope name may reach the default/prefix route or any upstream given as `ns`."""
    targets = {(t.upstream, t.name) for t in candidate_targets(ROUTER, "gcr.io/team-a/app")}
    assert ("gcr.io", "team-a/app") in targets  # path prefix
    assert ("docker.io", "gcr.io/team-a/app") in targets  # ?ns=docker.io
    one = {(t.upstream, t.name) for t in candidate_targets(ROUTER, "alpine")}
    assert ("docker.io", "library/alpine") in one and ("gcr.io", "alpine") in one


@pytest.mark.parametrize(
    ("user", "requested", "granted"),
    [
        # Anonymous: the docker.io library, as written with or without library/.
        (None, "repository:alpine:pull", ["repository:alpine:pull"]),
        (None, "repository:library/alpine:pull,push", ["repository:library/alpine:pull"]),
        (None, "repository:gcr.io/team-a/app:pull", []),  # never an error, just nothing
        # Path-prefix form and the ns form (name written without the registry) both work.
        ("alice", "repository:gcr.io/team-a/app:pull", ["repository:gcr.io/team-a/app:pull"]),
        ("alice", "repository:team-a/app:pull", ["repository:team-a/app:pull"]),
        ("alice", "repository:team-b/app:pull", []),
        # Several scopes at once, repeated names merged, other resource types dropped.
        (
            "alice",
            "repository:team-a/x:pull repository:team-a/x:push registry:catalog:*",
            ["repository:team-a/x:pull"],
        ),
        (
            "carol",
            "repository:private.example/x:pull,push",
            ["repository:private.example/x:pull,push"],
        ),
        ("erin", "repository:private.example/x:pull", []),  # no tenant: not granted
    ],
)
def test_grant_is_requested_intersect_allowed(
    user: str | None, requested: str, granted: list[str]
) -> None:
    """token.md: grant what was asked and is allowed; partial rights are not an error."""
    scopes = parse_scopes([requested])
    result = POLICY.grant(POLICY.principal(user), scopes, ROUTER)
    assert [str(s) for s in result] == granted


def test_grant_keeps_names_exactly_as_the_caller_wrote_them() -> None:
    """No library/ added, no ns applied: the access claim echoes the requested name."""
    result = POLICY.grant(ANONYMOUS, [Scope("repository", "alpine", ("pull",))], ROUTER)
    assert result == [Scope("repository", "alpine", ("pull",))]
