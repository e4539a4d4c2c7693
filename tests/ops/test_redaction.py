"""The redaction processor: secret keys dropped and secret values masked, wherever they sit.

The last tests render through ``configure_logging`` itself, for a structlog logger and a
stdlib (library) logger, so what is checked is what a log line would contain.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from gateway.log import REDACTED, configure_logging, redact_secrets, redact_value

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ0ZXN0Iiwic3ViIjoiYWxpY2UifQ.c2lnbmF0dXJlLWJ5dGVz"
VAULT_TOKEN = "hvs.CAESIJ7f0TbNkqv4PdMRu0ZfGkqP"
LEGACY_TOKEN = "s.Xq8pTnV2wYh3Lk9ZbRc4MdEf"
SECRET = "Sup3r-Secr3t-Value"


def redacted(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = redact_secrets(None, "info", dict(event))
    return result


@pytest.mark.parametrize(
    "key",
    [
        "authorization",
        "Authorization",
        "password",
        "registry_password",
        "secret_id",
        "client_secret",
        "token",
        "access_token",
        "x-vault-token",
        "jwt",
        "cookie",
        "api_key",
        "private_key",
        "auth",
    ],
)
def test_secret_named_keys_are_dropped(key: str) -> None:
    """A key naming a secret has its value replaced, whatever the value is."""
    assert redacted({key: SECRET})[key] == REDACTED
    assert redacted({key: 12345})[key] == REDACTED


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("token_realm", "auth.docker.io"),
        ("upstream_auth", "fetched"),
        ("route", "token"),
        ("event", "token_fetched"),
        ("path", "/v2/library/alpine/blobs/sha256:" + "a" * 64),
        ("bytes", 1024),
        ("status", 401),
        ("redirects", None),
    ],
)
def test_ordinary_fields_are_kept(key: str, value: Any) -> None:
    """Fields that only mention auth, and plain values, pass through unchanged."""
    assert redacted({key: value})[key] == value


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {SECRET}",
        f"sent basic {SECRET}",
        f"refused token {JWT}",
        f"login gave {VAULT_TOKEN}",
        f"login gave {LEGACY_TOKEN}",
        f"https://auth.example/token?service=x&password={SECRET}&scope=y",
        f'{{"password": "{SECRET}", "username": "robot"}}',
        f"{{'secret_id': '{SECRET}'}}",
        f"X-Vault-Token: {SECRET}",
        f"token={SECRET}",
        f'"auth":"{SECRET}"',
    ],
)
def test_secrets_inside_free_text_are_masked(text: str) -> None:
    """Bearer/Basic credentials, JWTs, Vault tokens and name=secret pairs are masked in text."""
    masked = redact_value(text)
    for secret in (SECRET, JWT, VAULT_TOKEN, LEGACY_TOKEN):
        assert secret not in masked
    assert REDACTED in masked


def test_surrounding_text_survives_masking() -> None:
    """Only the secret goes: the rest of a message stays readable."""
    masked = redact_value(f"GET https://r.example/v2/?token={SECRET}&n=10 answered 401")
    assert masked == f"GET https://r.example/v2/?token={REDACTED}&n=10 answered 401"


def test_nested_structures_are_redacted() -> None:
    """Secrets inside dicts, lists and tuples are found at any depth."""
    event = {
        "event": "upstream_refused",
        "request": {
            "headers": {"Authorization": f"Bearer {JWT}", "Accept": "application/json"},
            "attempts": [{"password": SECRET}, ("retry", f"basic {SECRET}")],
        },
    }
    out = redacted(event)
    assert SECRET not in json.dumps(out) and JWT not in json.dumps(out)
    assert out["request"]["headers"]["Accept"] == "application/json"
    assert out["request"]["headers"]["Authorization"] == REDACTED
    assert out["request"]["attempts"][0] == {"password": REDACTED}


def test_objects_are_redacted_through_their_text() -> None:
    """An exception or any object is scrubbed as the text it would be rendered as."""
    out = redacted({"error": ValueError(f"bad credentials password={SECRET}")})
    assert SECRET not in out["error"]
    assert out["error"].startswith("bad credentials password=")


@pytest.fixture
def rendered() -> Iterator[io.StringIO]:
    """configure_logging writing JSON into a buffer; the global logging state restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    try:
        yield stream
    finally:
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_rendered_structlog_line_is_redacted(rendered: io.StringIO) -> None:
    """A gateway event with secrets in keys, values and an exception renders without them."""
    structlog.contextvars.bind_contextvars(request_id="rid-1")
    log = structlog.get_logger("ops.redaction")
    try:
        raise RuntimeError(f"vault said: X-Vault-Token: {VAULT_TOKEN}")
    except RuntimeError:
        log.exception("vault_failed", password=SECRET, detail=f"Bearer {JWT}")
    [line] = lines(rendered)
    text = json.dumps(line)
    for secret in (SECRET, JWT, VAULT_TOKEN):
        assert secret not in text
    assert line["request_id"] == "rid-1"
    assert "RuntimeError" in line["exception"]


def test_rendered_library_line_is_redacted_and_carries_the_request_id(
    rendered: io.StringIO,
) -> None:
    """A stdlib logger (as hvac/urllib3 use) goes through the same processors and context."""
    structlog.contextvars.bind_contextvars(request_id="rid-2")
    logging.getLogger("hvac.adapters").warning("POST /v1/auth/approle/login secret_id=%s", SECRET)
    [line] = lines(rendered)
    assert SECRET not in json.dumps(line)
    assert line["request_id"] == "rid-2"
    assert line["logger"] == "hvac.adapters"
    assert line["event"] == f"POST /v1/auth/approle/login secret_id={REDACTED}"
