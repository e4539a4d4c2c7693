"""``WWW-Authenticate`` challenges (RFC 7235 §4.1, RFC 6750 §3) as registries send them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf"\s*({_TCHAR})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TCHAR}))\s*(?:,|$)")
_SCHEME_RE = re.compile(rf"\s*({_TCHAR})(?:\s+|$)")


@dataclass(frozen=True)
class Challenge:
    """One challenge: a scheme (lower-cased) and its auth-params (keys lower-cased)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> list[str]:
        # distribution joins several scopes with spaces in one `scope` param (token.md).
        raw = self.params.get("scope", "")
        return [s for s in raw.split(" ") if s]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into challenges; junk yields what could be read."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        while pos < len(header) and header[pos] in ", \t":
            pos += 1
        m = _SCHEME_RE.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            pm = _PARAM_RE.match(header, pos)
            if not pm:
                break
            key = pm.group(1).lower()
            value = pm.group(2)
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else pm.group(3)
            params[key] = value
            pos = pm.end()
        challenges.append(Challenge(scheme, params))
    return challenges


def find_challenge(headers: list[str], scheme: str) -> Challenge | None:
    """The first challenge with ``scheme`` across all ``WWW-Authenticate`` header lines."""
    for header in headers:
        for challenge in parse_challenges(header):
            if challenge.scheme == scheme:
                return challenge
    return None
