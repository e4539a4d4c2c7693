"""The ``Authorization`` header grammar: Basic (RFC 7617) and Bearer (RFC 6750) credentials.

Pure functions over the header's text. The grammar is ASCII (RFC 9110 §11.4: a scheme token,
one space, a token68), while aiohttp hands a header value over as ``str`` decoded with
``surrogateescape``, so non-ASCII text and invalid UTF-8 bytes arrive as characters no codec
accepts back. Everything outside the grammar yields None here, never an exception: a caller
who sends it gets the same 401 and challenge as for any other unusable credential.

``decode_basic`` is also the grammar of the ``auth`` field of Docker config files and Vault
secrets (base64 of ``user:password``).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

# RFC 9110 §11.2: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ].
_CREDENTIALS = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?: +([A-Za-z0-9\-._~+/]+=*))? *")
# RFC 7617 §2: the user-id and password may not hold control characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class BasicCredentials:
    """A user and password from ``Basic`` credentials; the password never shows in ``repr``."""

    user: str
    password: str = field(repr=False)

    @property
    def empty(self) -> bool:
        """``Basic Og==`` (":"): what containers/image sends when it has no credentials."""
        return not self.user and not self.password


def split_credentials(value: str) -> tuple[str, str] | None:
    """``<scheme> <token68>`` → (scheme lower-cased, token68 or ""); None outside the grammar."""
    if not value.isascii():
        return None
    match = _CREDENTIALS.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    return match.group(1).lower(), match.group(2) or ""


def decode_basic(token68: str) -> BasicCredentials | None:
    """base64 of ``user:password`` (UTF-8, RFC 7617 §2.1) → credentials; None when malformed."""
    try:
        decoded = base64.b64decode(token68, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError covers UnicodeDecodeError
        return None
    user, sep, password = decoded.partition(":")
    if not sep or _CONTROL.search(decoded):
        return None
    return BasicCredentials(user, password)


def parse_basic(value: str) -> BasicCredentials | None:
    """An ``Authorization: Basic ...`` value → credentials; None for any other value."""
    parts = split_credentials(value)
    if parts is None or parts[0] != "basic" or not parts[1]:
        return None
    return decode_basic(parts[1])


def parse_bearer(value: str) -> str | None:
    """An ``Authorization: Bearer <token>`` value → the token; None for any other value."""
    parts = split_credentials(value)
    if parts is None or parts[0] != "bearer" or not parts[1]:
        return None
    return parts[1]


def scheme_of(value: str) -> str | None:
    """The lower-cased scheme of an ``Authorization`` value; None outside the grammar."""
    parts = split_credentials(value)
    return parts[0] if parts is not None else None
