"""gateway.refusals: the request-head bound's arithmetic and the rate-limited refusal line."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from gateway.refusals import RejectionLog, head_ends_within, raw_response


@pytest.mark.parametrize(
    ("tail", "data", "room", "ends"),
    [
        (b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 100, True),
        (b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 20, False),  # the end lies past the room
        (b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody" + b"b" * 500, 30, True),
        (b"x\r\n\r", b"\nrest", 1, True),  # the blank line straddles two reads
        (b"\r\n", b"\r\nrest", 2, True),
        (b"\r\n", b"\r\nrest", 1, False),
        (b"", b"X-Pad: " + b"p" * 1000, 100, False),
        (b"", b"anything", 0, False),
        (b"", b"anything", -5, False),
    ],
)
def test_head_ends_within(tail: bytes, data: bytes, room: int, ends: bool) -> None:
    """A head ends within the room when its blank line does, across read boundaries too."""
    assert head_ends_within(tail, data, room) is ends


def test_raw_response_is_an_enveloped_close() -> None:
    """The raw refusal is HTTP/1.1 with the envelope, Content-Length, Connection: close."""
    raw = raw_response(431, "UNSUPPORTED", "too large", {"max_header_size": 1}, request_id="r1")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert "Connection: close" in lines and "X-Request-ID: r1" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {
        "errors": [
            {"code": "UNSUPPORTED", "message": "too large", "detail": {"max_header_size": 1}}
        ]
    }


def test_rejection_log_writes_one_line_per_status_a_second() -> None:
    """Bursts of refusals write one line a second per status; the rest are counted into it."""
    now = [100.0]
    rejections = RejectionLog(clock=lambda: now[0])
    with capture_logs() as lines:
        for _ in range(50):
            rejections.rejected(408, "slow", "192.0.2.1", "id")
        rejections.rejected(431, "large", "192.0.2.1", "id")
        now[0] += 1.0
        rejections.rejected(408, "slow", "192.0.2.1", "id")
    assert [(line["status"], line["suppressed"]) for line in lines] == [(408, 0), (431, 0),
                                                                        (408, 49)]  # fmt: skip
