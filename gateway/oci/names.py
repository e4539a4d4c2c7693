"""Repository names, tags and digests: the grammar from the OCI distribution spec (§1.8).

Everything here is a pure function over strings, so the handlers can validate a path before a
single byte goes upstream.
"""

from __future__ import annotations

import re

# distribution-spec "Pulling manifests": <name> grammar.
_NAME_RE = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# image-spec descriptor.md digest grammar.
_DIGEST_GRAMMAR_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
# The algorithms we are willing to put into an upstream URL.
_KNOWN_DIGESTS = {
    "sha256": re.compile(r"[a-f0-9]{64}"),
    "sha512": re.compile(r"[a-f0-9]{128}"),
}
NAME_MAX_LENGTH = 255


def is_valid_name(name: str) -> bool:
    """True when ``name`` is a repository name per the OCI grammar and length limit."""
    return len(name) <= NAME_MAX_LENGTH and _NAME_RE.fullmatch(name) is not None


def is_valid_tag(tag: str) -> bool:
    """True when ``tag`` matches the OCI tag grammar (at most 128 characters)."""
    return _TAG_RE.fullmatch(tag) is not None


def is_valid_digest(digest: str) -> bool:
    """True when ``digest`` follows the image-spec grammar and is a sha256/sha512 we can check."""
    if _DIGEST_GRAMMAR_RE.fullmatch(digest) is None:
        return False
    algorithm, _, encoded = digest.partition(":")
    pattern = _KNOWN_DIGESTS.get(algorithm)
    return pattern is not None and pattern.fullmatch(encoded) is not None


def looks_like_digest(reference: str) -> bool:
    """A reference with a colon can only be meant as a digest (tags have no colon)."""
    return ":" in reference


def is_valid_reference(reference: str) -> bool:
    """A manifest reference is a tag or a digest."""
    if looks_like_digest(reference):
        return is_valid_digest(reference)
    return is_valid_tag(reference)
