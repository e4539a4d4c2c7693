"""Docker token scopes: ``repository:<name>:pull,push`` (distribution auth/scope.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Scope:
    """A resource scope; ``actions`` is sorted and de-duplicated."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> Scope | None:
    """Parse one scope; the name may hold a ``host:port`` so split type left, actions right."""
    type_, sep, rest = text.partition(":")
    if not sep:
        return None
    name, sep, actions = rest.rpartition(":")
    if not sep or not name or not type_:
        return None
    # scope.md: "repository(plugin)" equals "repository"; the class is ignored.
    type_ = type_.split("(", 1)[0]
    acts = tuple(sorted({a for a in actions.split(",") if a}))
    return Scope(type_, name, acts)


def parse_scopes(values: list[str]) -> list[Scope]:
    """Parse repeated and space-separated scope values, skipping malformed ones."""
    scopes: list[Scope] = []
    for value in values:
        for item in value.split(" "):
            if item and (scope := parse_scope(item)) is not None:
                scopes.append(scope)
    return scopes


def pull_scope(name: str) -> Scope:
    """The scope a pull of ``name`` needs."""
    return Scope("repository", name, ("pull",))
