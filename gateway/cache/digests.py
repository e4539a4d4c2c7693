"""Digests as the cache uses them: which hash checks a digest, and where it files content."""

from __future__ import annotations

import hashlib
from typing import Any

_ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


def hasher_for(digest: str) -> Any:
    """A fresh hash object for ``digest``'s algorithm; ValueError for one we cannot check."""
    algorithm, _, encoded = digest.partition(":")
    if algorithm not in _ALGORITHMS or not encoded:
        raise ValueError(f"unsupported digest algorithm: {algorithm!r}")
    return _ALGORITHMS[algorithm]()


def is_cacheable(digest: str) -> bool:
    """Only content whose digest we can recompute is ever stored."""
    algorithm, _, encoded = digest.partition(":")
    return (
        algorithm in _ALGORITHMS
        and bool(encoded)
        and all(c in "0123456789abcdef" for c in encoded)
        and len(encoded) == _ALGORITHMS[algorithm]().digest_size * 2
    )


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{_ALGORITHMS[algorithm](data).hexdigest()}"


def matches(hasher: Any, digest: str) -> bool:
    return bool(f"{hasher.name}:{hasher.hexdigest()}" == digest)
