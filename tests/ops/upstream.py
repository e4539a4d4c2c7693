"""A loopback upstream for what no real registry does on demand: Docker Hub's rate-limit
headers and a blob that trickles out slowly (to hold a pull in flight across a SIGTERM).

Run as its own process, ``python -m tests.ops.upstream --port N``, so the gateway under test
and the test's own event loop never share a loop with it. It serves one repository:

- ``GET|HEAD /v2/<name>/manifests/<ref>``: an OCI manifest naming the slow blob, with
  ``ratelimit-limit``/``ratelimit-remaining`` as Docker Hub sends them (``76;w=21600``);
- ``GET /v2/<name>/blobs/<digest of slow_blob()>``: ``--blob-size`` bytes with a
  ``Content-Length``, in ``--chunks`` equal pieces ``--delay`` seconds apart.

`SlowUpstream.start(workdir, ...)` starts it and stops it by PID, like tests/components.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from pathlib import Path

from aiohttp import web

from tests.components.ports import LOOPBACK, free_port, wait_for_http
from tests.components.process import ManagedProcess, Stoppable, python_module_argv
from tests.components.registry import repo_root

RATELIMIT_LIMIT = 100
RATELIMIT_REMAINING = 76
RATELIMIT_WINDOW = 21600
DEFAULT_BLOB_SIZE = 2 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def slow_blob(size: int) -> bytes:
    """The blob's bytes: deterministic, so the test knows its digest without asking."""
    pattern = hashlib.sha256(b"registry-gateway slow blob").digest() * 64
    return (pattern * (size // len(pattern) + 1))[:size]


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def manifest_for(blob: bytes) -> bytes:
    config = b"{}"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_of(blob),
                    "size": len(blob),
                }
            ],
        }
    ).encode()


def make_app(blob_size: int, chunks: int, delay: float) -> web.Application:
    blob = slow_blob(blob_size)
    blob_digest = digest_of(blob)
    manifest = manifest_for(blob)
    ratelimit = {
        "ratelimit-limit": f"{RATELIMIT_LIMIT};w={RATELIMIT_WINDOW}",
        "ratelimit-remaining": f"{RATELIMIT_REMAINING};w={RATELIMIT_WINDOW}",
        "docker-ratelimit-source": "127.0.0.1",
    }

    async def base(request: web.Request) -> web.Response:
        return web.json_response({})

    async def manifests(request: web.Request) -> web.Response:
        headers = {
            **ratelimit,
            "Content-Type": OCI_MANIFEST,
            "Docker-Content-Digest": digest_of(manifest),
        }
        return web.Response(body=manifest, headers=headers)

    async def blobs(request: web.Request) -> web.StreamResponse:
        if request.match_info["digest"] != blob_digest:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Docker-Content-Digest": blob_digest,
            }
        )
        response.content_length = len(blob)
        await response.prepare(request)
        piece = -(-len(blob) // chunks)
        for start in range(0, len(blob), piece):
            await response.write(blob[start : start + piece])
            await asyncio.sleep(delay)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v2/", base)
    app.router.add_route("*", "/v2/{name:.+}/manifests/{reference}", manifests)
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blobs)
    return app


class SlowUpstream(Stoppable):
    """The loopback upstream as a child process: ``host`` (host:port), ``blob``, ``stop()``."""

    def __init__(self, process: ManagedProcess, port: int, blob_size: int) -> None:
        self.process = process
        self.port = port
        self.host = f"{LOOPBACK}:{port}"
        self.url = f"http://{self.host}"
        self.blob = slow_blob(blob_size)
        self.blob_digest = digest_of(self.blob)

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        blob_size: int = DEFAULT_BLOB_SIZE,
        chunks: int = 16,
        delay: float = 0.1,
    ) -> SlowUpstream:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        argv = python_module_argv(
            "tests.ops.upstream",
            *("--port", str(port)),
            *("--blob-size", str(blob_size)),
            *("--chunks", str(chunks)),
            *("--delay", str(delay)),
        )
        process = ManagedProcess.spawn(
            "slow-upstream", argv, log_path=workdir / "upstream.log", cwd=repo_root()
        )
        try:
            wait_for_http(f"http://{LOOPBACK}:{port}/v2/", timeout=20.0, alive=process.alive)
        except TimeoutError as exc:
            process.stop()
            raise process.startup_error(str(exc)) from exc
        return cls(process, port, blob_size)

    def stop(self) -> None:
        self.process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--blob-size", type=int, default=DEFAULT_BLOB_SIZE)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.1)
    args = parser.parse_args()
    app = make_app(args.blob_size, args.chunks, args.delay)
    web.run_app(app, host=LOOPBACK, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
