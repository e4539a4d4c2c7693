"""Single byte ranges (RFC 9110 §14.1.2): parse ``Range`` against a known size."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


class Unsatisfiable(Exception):
    """No byte of the range lies inside the content: 416 with ``bytes */size``."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One range, or None to answer the whole body (no header, several ranges, bad syntax)."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # RFC 9110: a server may ignore a Range it does not support
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    if start >= size:
        raise Unsatisfiable
    end = size if last == "" else min(int(last) + 1, size)
    if end <= start:
        return None  # last < first: syntactically invalid, ignore
    return ByteRange(start, end)
