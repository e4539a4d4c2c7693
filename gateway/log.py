"""Logging: structlog configured once, JSON (or console) lines, secrets redacted.

Library logs (aiohttp, hvac, urllib3) go through the standard library and are rendered by the
same processors, so every line carries the request id bound by the request middleware.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = re.compile(
    r"(authorization|password|passwd|secret|token|jwt|credential|cookie|api[_-]?key"
    r"|private[_-]?key|^auth$)",
    re.IGNORECASE,
)
# Keys whose names contain "token" but hold no secret.
_SAFE_KEYS = {"token_realm", "upstream_auth"}
_SECRET_VALUES = re.compile(
    r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    r"|\b(?:hvs|s|hvb|b)\.[A-Za-z0-9]{20,}"
)
# `password=...`, `"token": "..."`, `X-Vault-Token: ...` inside free text (query strings,
# exception messages, reprs of dicts): keep the name, drop the value.
_SECRET_ASSIGNMENTS = re.compile(
    r"""(?ix)
    (["']?\b(?:password|passwd|pwd|secret_id|secret|client_secret|token|access_token
      |refresh_token|id_token|jwt|x-vault-token|authorization|auth|api_key)["']?\s*[:=]\s*)
    ("[^"]*"|'[^']*'|[^\s&,;)}\]]+)
    """
)
# Matches wherever either pattern above could (a superset, checked first): most values are
# paths, names and numbers, and one search is cheaper than two substitutions.
_MAYBE_SECRET = re.compile(
    r"(?i)bearer|basic|eyJ|[sb]\.[A-Za-z0-9]{20}|pass|pwd|secret|token|jwt|auth|api[_-]?key"
)
REDACTED = "[redacted]"
# What one log line may copy from a caller: a flood of scopes, a huge name or header must not
# become a megabyte line (nor a megabyte of redaction work). Tracebacks get more room.
MAX_VALUE_CHARS = 2048
MAX_EXCEPTION_CHARS = 16384
MAX_ITEMS = 64
_PLAIN = (int, float, bool, type(None))


def redact_value(value: str) -> str:
    """Mask credentials, JWTs, Vault tokens and ``name=secret`` pairs inside free text."""
    if _MAYBE_SECRET.search(value) is None:
        return value
    value = _SECRET_VALUES.sub(REDACTED, value)
    return _SECRET_ASSIGNMENTS.sub(lambda m: m.group(1) + REDACTED, value)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_value(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret_key(k) else _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(v) for v in value]
    # Anything else is rendered through str() later; scrub that text now.
    return redact_value(str(value))


def _is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and _is_secret_name(key)


@functools.lru_cache(maxsize=1024)  # event keys are few; nested mapping keys stay bounded here
def _is_secret_name(key: str) -> bool:
    return key not in _SAFE_KEYS and bool(_SECRET_KEYS.search(key))


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: drop secret-named keys and scrub secret-looking values, nested too."""
    for key in list(event):
        if key.startswith("_"):
            continue  # structlog's own bookkeeping (_record, _from_structlog)
        event[key] = REDACTED if _is_secret_key(key) else _redact(event[key])
    return event


def _bound(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}...({len(value)} chars)"
    if isinstance(value, list | tuple | set | frozenset):
        items = [_bound(v, limit) for v in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"...({len(value)} items)")
        return items
    if isinstance(value, Mapping):
        return {k: _bound(v, limit) for k, v in list(value.items())[:MAX_ITEMS]}
    return value


def bound_values(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: cut long strings and long lists, so no line grows with its input."""
    for key in list(event):
        if not key.startswith("_"):
            limit = MAX_EXCEPTION_CHARS if key == "exception" else MAX_VALUE_CHARS
            event[key] = _bound(event[key], limit)
    return event


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
        bound_values,  # after redaction: a cut must never split a secret out of its pattern
    ]


class LineWriter:
    """structlog's final logger: one rendered line into the stdlib handler's stream.

    Gateway events skip the stdlib ``LogRecord`` machinery (a fifth of a warm manifest GET's
    CPU went to it); library logs still go through the handler. Both write under the
    handler's lock, so lines from threads never interleave.
    """

    def __init__(self, handler: logging.StreamHandler[TextIO], name: str) -> None:
        self.name = name  # read by structlog's add_logger_name
        self._handler = handler

    def msg(self, message: str) -> None:
        handler = self._handler
        handler.acquire()
        try:
            handler.stream.write(message + "\n")
            handler.stream.flush()
        finally:
            handler.release()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def configure_logging(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger to write one rendered line per event."""
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log duplicates our canonical request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*_shared_processors(), renderer],
        logger_factory=lambda name=None, *_: LineWriter(handler, name or "gateway"),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
