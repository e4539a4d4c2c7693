"""Readiness: failing checks make /readyz 503; degraded ones are reported but stay ready."""

from __future__ import annotations

from gateway.health import Degraded, Readiness


def test_checks_ok_failing_degraded_and_broken() -> None:
    """None is ok, text fails, Degraded reports without failing, an exception fails."""
    readiness = Readiness()
    state: dict[str, str | None] = {"vault": None}
    readiness.add_check("vault", lambda: state["vault"])
    assert readiness.report() == (True, {"draining": "ok", "vault": "ok"})
    state["vault"] = Degraded("unreachable; serving cached secrets")
    ready, checks = readiness.report()
    assert ready and checks["vault"] == "degraded: unreachable; serving cached secrets"
    state["vault"] = "not logged in yet"
    assert readiness.report() == (False, {"draining": "ok", "vault": "not logged in yet"})

    def broken() -> str | None:
        raise RuntimeError("boom")

    readiness.add_check("broken", broken)
    state["vault"] = None
    ready, checks = readiness.report()
    assert not ready and checks["broken"] == "check failed: RuntimeError"


def test_draining_fails_readiness() -> None:
    """SIGTERM's draining flag turns readiness off at once."""
    readiness = Readiness()
    readiness.draining = True
    assert readiness.report() == (False, {"draining": "draining"})
