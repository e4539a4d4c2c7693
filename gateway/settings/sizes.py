"""Byte sizes in the config file: a whole number of bytes, or a number with a binary unit."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .reader import Reader, join_key

_UNITS = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")


def byte_size(value: Any) -> int | None:
    """``4194304``, ``"4MiB"``, ``"1.5 GiB"`` → bytes; None when it is no size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or (match := _SIZE_RE.fullmatch(value)) is None:
        return None
    unit = _UNITS.get(match.group(2).upper())
    return None if unit is None else int(float(match.group(1)) * unit)


def parse_byte_size(
    data: Mapping[str, Any], key: str, path: str, default: int, reader: Reader, *, minimum: int
) -> int:
    """``data[key]`` as bytes (default when absent); a problem names the key path."""
    if key not in data:
        return default
    size = byte_size(data[key])
    if size is None:
        reader.fail(join_key(path, key), "must be a size in bytes, or with a unit (KiB, MiB, GiB)")
        return default
    if size < minimum:
        reader.fail(join_key(path, key), f"must be at least {minimum} bytes")
        return default
    return size
