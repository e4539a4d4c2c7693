"""Readiness: named checks that ``/readyz`` reports, and the draining flag set on SIGTERM."""

from __future__ import annotations

from collections.abc import Callable


class Degraded(str):
    """A check result that is reported but keeps the gateway ready (e.g. serving cached
    credentials through a Vault outage: taking every replica out of service would turn a
    Vault blip into a pull outage)."""

    __slots__ = ()


class Readiness:
    """Each check returns None when fine, a short problem text, or a Degraded note."""

    def __init__(self) -> None:
        self.draining = False
        self._checks: dict[str, Callable[[], str | None]] = {}

    def add_check(self, name: str, check: Callable[[], str | None]) -> None:
        self._checks[name] = check

    def report(self) -> tuple[bool, dict[str, str]]:
        results = {"draining": "draining" if self.draining else "ok"}
        degraded: set[str] = set()
        for name, check in self._checks.items():
            try:
                problem = check()
            except Exception as exc:  # a broken check reports, never crashes the probe
                problem = f"check failed: {type(exc).__name__}"
            if isinstance(problem, Degraded):
                results[name] = f"degraded: {problem}"
                degraded.add(name)
            else:
                results[name] = problem or "ok"
        ready = all(v == "ok" or k in degraded for k, v in results.items())
        return ready, results
