"""Access rules: which principal may do what on ``<upstream>/<name>``; pure functions of config.

A rule applies to a principal when its ``users`` name the user, a ``group:<name>`` the user
is in, ``*`` (any authenticated user) or ``anonymous`` (a caller without credentials). What a
principal may do is the union of the ``actions`` of the rules that apply and whose
``repositories`` globs match. Globs are ``fnmatch`` patterns, case-sensitive, over the whole
``<upstream>/<name>`` string: ``*`` matches any run of characters, ``/`` included, so
``docker.io/library/*`` also covers ``docker.io/library/a/b``. Without rules, authenticated
users may do everything and anonymous callers nothing (CONTRACT.md).

An upstream whose credentials are a Vault path with ``{tenant}`` can only be used by a
principal that has a tenant: nobody else has credentials there.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ..errors import RegistryError
from ..oci.scope import Scope
from ..routing import Router, Target
from ..settings import ClientsSettings

ALL_ACTIONS = "*"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (with tenant and groups) or the anonymous caller."""

    name: str | None
    tenant: str | None = None
    groups: frozenset[str] = frozenset()

    @property
    def authenticated(self) -> bool:
        return self.name is not None

    @property
    def label(self) -> str:
        """For logs: the user name, or ``anonymous``."""
        return self.name if self.name is not None else "anonymous"


ANONYMOUS = Principal(None)


@dataclass(frozen=True)
class Verdict:
    """The actions allowed on one ``<upstream>/<name>``, and why (for the audit line)."""

    actions: frozenset[str]
    reason: str

    def permits(self, action: str) -> bool:
        return action in self.actions or ALL_ACTIONS in self.actions


@dataclass(frozen=True)
class _Rule:
    index: int
    users: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]
    actions: frozenset[str]

    def applies_to(self, principal: Principal) -> bool:
        if principal.name is None:
            return "anonymous" in self.users
        return (
            "*" in self.users
            or principal.name in self.users
            or any(f"group:{group}" in self.users for group in principal.groups)
        )

    def covers(self, access_name: str) -> bool:
        return any(pattern.fullmatch(access_name) for pattern in self.patterns)


class Policy:
    """The ``clients`` section as decisions: principals, verdicts, and token grants."""

    def __init__(self, clients: ClientsSettings, tenant_upstreams: Collection[str] = ()) -> None:
        self._tenant_of = {user: t for t, users in clients.tenants.items() for user in users}
        self._groups_of: dict[str, set[str]] = {}
        for group, users in clients.groups.items():
            for user in users:
                self._groups_of.setdefault(user, set()).add(group)
        self._rules = tuple(
            _Rule(
                index,
                frozenset(rule.users),
                tuple(re.compile(fnmatch.translate(p)) for p in rule.repositories),
                frozenset(rule.actions),
            )
            for index, rule in enumerate(clients.access)
        )
        self._tenant_upstreams = frozenset(tenant_upstreams)

    def principal(self, user: str | None) -> Principal:
        """The principal for an authenticated ``user`` (None: anonymous)."""
        if user is None:
            return ANONYMOUS
        return Principal(user, self._tenant_of.get(user), frozenset(self._groups_of.get(user, ())))

    def verdict(self, principal: Principal, upstream: str, name: str) -> Verdict:
        """What ``principal`` may do on ``<upstream>/<name>`` (name as the upstream knows it)."""
        if upstream in self._tenant_upstreams and principal.tenant is None:
            return Verdict(frozenset(), f"{upstream} uses per-tenant credentials; no tenant")
        if not self._rules:
            if principal.authenticated:
                return Verdict(frozenset({ALL_ACTIONS}), "no access rules: users may pull all")
            return Verdict(frozenset(), "no access rules: anonymous may pull nothing")
        access_name = f"{upstream}/{name}"
        actions: set[str] = set()
        matched: list[str] = []
        for rule in self._rules:
            if rule.applies_to(principal) and rule.covers(access_name):
                actions |= rule.actions
                matched.append(str(rule.index))
        if not matched:
            return Verdict(frozenset(), "no rule matches")
        return Verdict(frozenset(actions), f"clients.access[{','.join(matched)}]")

    def grant(self, principal: Principal, scopes: Iterable[Scope], router: Router) -> list[Scope]:
        """requested ∩ allowed for each repository scope (Docker token spec: never an error).

        A scope names the repository as the caller wrote it, without ``ns``; an action is
        granted when it is allowed on any upstream the name can route to. Each request is
        checked again against its own ``<upstream>/<name>``, so this never widens access.
        """
        merged: dict[str, set[str]] = {}
        for scope in scopes:
            if scope.type != "repository":
                continue  # registry:catalog:* and the like: the gateway offers none
            allowed: set[str] = set()
            for target in candidate_targets(router, scope.name):
                allowed |= self.verdict(principal, target.upstream, target.name).actions
            granted = {a for a in scope.actions if a in allowed or ALL_ACTIONS in allowed}
            if granted:
                merged.setdefault(scope.name, set()).update(granted)
        return [Scope("repository", name, tuple(sorted(acts))) for name, acts in merged.items()]


def candidate_targets(router: Router, caller_name: str) -> list[Target]:
    """Every target ``caller_name`` can reach: with each upstream as ``ns``, and without."""
    targets: list[Target] = []
    for ns in [None, *sorted(router.upstreams)]:
        try:
            target = router.route(caller_name, ns=ns, host=None)
        except RegistryError:
            continue
        if target not in targets:
            targets.append(target)
    return targets
