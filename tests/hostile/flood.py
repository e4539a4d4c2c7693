"""The attacker of the memory test, in a process of its own (so it never shares a GIL with the
/healthz probe): ``python -m tests.hostile.flood PORT CONNECTIONS HEAD_BYTES HOLD_SECONDS``.

Opens the connections, sends each an unfinished request head, reads whatever answer comes,
holds every connection open for HOLD_SECONDS, closes them, and prints
``{"opened": n, "answered": n}`` as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys


def unfinished_head(total: int) -> bytes:
    """A GET /v2/ head of about ``total`` bytes in 4000-byte header lines, never finished."""
    lines = [b"GET /v2/ HTTP/1.1", b"Host: gateway.test"]
    lines += [f"X-Pad-{i:04d}: ".encode() + b"p" * 4000 for i in range(total // 4016)]
    return b"\r\n".join(lines) + b"\r\n"


async def flood(port: int, connections: int, head: bytes, hold: float) -> dict[str, int]:
    release = asyncio.Event()

    async def one() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answered = False
        try:
            with contextlib.suppress(ConnectionError, TimeoutError):
                writer.write(head)
                await asyncio.wait_for(writer.drain(), 20)
            with contextlib.suppress(ConnectionError, TimeoutError):
                answered = (await asyncio.wait_for(reader.read(64), 5)).startswith(b"HTTP/1.1 ")
            await release.wait()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return answered

    tasks = [asyncio.create_task(one()) for _ in range(connections)]
    await asyncio.sleep(hold)
    release.set()
    results = await asyncio.gather(*tasks)
    return {"opened": len(results), "answered": sum(results)}


def main(argv: list[str]) -> None:
    port, connections, size, hold = int(argv[0]), int(argv[1]), int(argv[2]), float(argv[3])
    result = asyncio.run(flood(port, connections, unfinished_head(size), hold))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
