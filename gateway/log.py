"""Logging: structlog configured once, JSON (or console) lines, secrets redacted.

Library logs (aiohttp, hvac, urllib3) go through the standard library and are rendered by the
same processors, so every line carries the request id bound by the request middleware.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_KEYS = re.compile(
    r"(authorization|password|passwd|secret|token|jwt|credential|cookie|x-vault-token)",
    re.IGNORECASE,
)
# Keys whose names contain "token" but hold no secret.
_SAFE_KEYS = {"token_realm", "upstream_auth"}
_SECRET_VALUES = re.compile(
    r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    r"|\b(?:hvs|s|hvb|b)\.[A-Za-z0-9]{20,}"
)
REDACTED = "[redacted]"


def redact_value(value: str) -> str:
    """Mask bearer/basic credentials, JWTs and Vault tokens inside free text."""
    return _SECRET_VALUES.sub(REDACTED, value)


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: drop secret-named keys and scrub secret-looking values."""
    for key in list(event):
        value = event[key]
        if key not in _SAFE_KEYS and _SECRET_KEYS.search(key):
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = redact_value(value)
    return event


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]


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
        processors=[
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
