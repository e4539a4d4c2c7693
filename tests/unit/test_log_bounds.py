"""gateway.log: what a log line may copy from a caller is bounded, after redaction."""

from __future__ import annotations

from typing import Any

from gateway.log import MAX_ITEMS, MAX_VALUE_CHARS, bound_values, redact_secrets


def process(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = bound_values(None, "info", redact_secrets(None, "info", event))
    return result


def test_audit_line_bounded_long_strings_are_cut_and_marked() -> None:
    """A 1 MB string in a log field is cut to MAX_VALUE_CHARS, with its length noted."""
    event = process({"event": "token_decided", "reason": "x" * 1_000_000})
    assert len(event["reason"]) < MAX_VALUE_CHARS + 40
    assert event["reason"].endswith("...(1000000 chars)")


def test_audit_line_bounded_long_lists_are_cut_and_counted() -> None:
    """A list of 40,000 scopes keeps MAX_ITEMS of them and says how many there were."""
    event = process({"event": "token_decided", "scopes": [f"repository:r{i}:pull"
                                                          for i in range(40_000)]})  # fmt: skip
    assert len(event["scopes"]) == MAX_ITEMS + 1
    assert event["scopes"][-1] == "...(40000 items)"


def test_audit_line_bounded_cut_never_splits_a_secret_out_of_redaction() -> None:
    """A credential straddling the cut is redacted first, so no fragment of it is left."""
    secret = "Basic " + "QWxhZGRpbjpvcGVuIHNlc2FtZQ" * 4
    text = "p" * (MAX_VALUE_CHARS - 10) + secret
    assert "QWxhZGRp" not in str(process({"event": "x", "detail": text}))


def test_audit_line_bounded_short_values_untouched() -> None:
    """Ordinary values pass unchanged."""
    event = {"event": "x", "status": 200, "name": "library/alpine", "scopes": ["a", "b"]}
    assert process(dict(event)) == event
