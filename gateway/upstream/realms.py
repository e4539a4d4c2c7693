"""Where an upstream's credentials may go: its own host and its token realms.

SECURITY: credentials only go to the upstream host, to realms on its registrable domain, or to
hosts listed in ``token_realms``. A token server on another domain gets an anonymous request.
"""

from __future__ import annotations

import ipaddress

from yarl import URL

# Second-level labels under country TLDs that act as public suffixes (co.uk, com.au, ...).
_SECOND_LEVEL = {"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go"}


def registrable_domain(host: str) -> str:
    """Approximate eTLD+1 without a public-suffix list; an IP address is its own domain."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def credentials_allowed(url: URL, upstream_url: URL, extra_realms: tuple[str, ...]) -> bool:
    """May the upstream's credentials be sent to ``url``?"""
    if url.host is None or upstream_url.host is None:
        return False
    if url.scheme == "http" and upstream_url.scheme == "https":
        return False  # never downgrade credentials to plain text
    host = url.host.lower()
    if host == upstream_url.host.lower():
        return True
    authority = f"{host}:{url.port}" if url.port is not None else host
    if host in extra_realms or authority in extra_realms:
        return True
    return registrable_domain(host) == registrable_domain(upstream_url.host)
