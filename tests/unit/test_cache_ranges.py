"""Single byte ranges against a known size (RFC 9110 §14.1.2)."""

from __future__ import annotations

import pytest

from gateway.cache.ranges import ByteRange, Unsatisfiable, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, ByteRange(0, 10)),
        ("bytes=90-", 100, ByteRange(90, 100)),
        ("bytes=90-1000", 100, ByteRange(90, 100)),
        ("bytes=-10", 100, ByteRange(90, 100)),
        ("bytes=-1000", 100, ByteRange(0, 100)),
        ("bytes=0-0", 1, ByteRange(0, 1)),
        ("bytes=0-9,20-29", 100, None),  # several ranges: answered whole
        ("items=0-9", 100, None),
        ("bytes=9-0", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes=-", 100, None),
    ],
)
def test_range_grammar(header: str | None, size: int, expected: ByteRange | None) -> None:
    """A single satisfiable range is honoured; anything else is answered whole."""
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100),
                                              ("bytes=0-", 0)])  # fmt: skip
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    """A range starting at or past the end (or empty) is 416 material."""
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def test_content_range_names_the_inclusive_end_and_size() -> None:
    """Content-Range is `bytes first-last/size` with an inclusive last byte."""
    assert ByteRange(10, 20).content_range(100) == "bytes 10-19/100"
