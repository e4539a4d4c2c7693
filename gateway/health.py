"""Readiness: named checks that ``/readyz`` reports, and the draining flag set on SIGTERM."""

from __future__ import annotations

from collections.abc import Callable


class Readiness:
    """Each check returns None when fine, or a short problem text."""

    def __init__(self) -> None:
        self.draining = False
        self._checks: dict[str, Callable[[], str | None]] = {}

    def add_check(self, name: str, check: Callable[[], str | None]) -> None:
        self._checks[name] = check

    def report(self) -> tuple[bool, dict[str, str]]:
        results = {"draining": "draining" if self.draining else "ok"}
        for name, check in self._checks.items():
            try:
                problem = check()
            except Exception as exc:  # a broken check reports, never crashes the probe
                problem = f"check failed: {type(exc).__name__}"
            results[name] = problem or "ok"
        return all(v == "ok" for v in results.values()), results
