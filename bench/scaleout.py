"""Scale-out bench: S3 blob hits vs SeaweedFS's own GET; 3 replicas vs one on cached manifests.

    python bench/scaleout.py [--blob-mib 256] [--runs 3] [--seconds 10]

Everything runs on 127.0.0.1: a SeaweedFS (S3), a docker-registry upstream, gateways with the
S3 store, haproxy for the 3-replica case, curl and wrk as clients. Every loop is bounded (curl
--max-time, wrk -d, subprocess timeouts) and every process is stopped by PID at the end.

1. blob-hit-s3: one blob, filled once through the gateway; then alternately `curl` of a
   presigned URL straight from SeaweedFS and `curl` of the gateway's HIT (streamed from S3).
   Ratio = gateway / SeaweedFS (best of --runs each).
2. manifest-replicas: `wrk` on a cached manifest (by digest) through one replica, then through
   haproxy in front of three. Ratio = three / one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.components import client
from tests.components.balancer import Balancer
from tests.components.images import push_blob
from tests.components.redis import Redis
from tests.components.registry import Registry
from tests.components.seaweedfs import SeaweedFS
from tests.gateway_process import GatewayProcess
from tests.scaleout.conftest import S3_ENV, replica_config

MiB = 1 << 20


def curl_speed(url: str) -> float:
    """Bytes per second of one GET (curl's own measure), body discarded."""
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "120", "-o", "/dev/null", "-w", "%{speed_download}", url],
        capture_output=True, text=True, timeout=150, check=True,
    )  # fmt: skip
    return float(out.stdout)


def wrk_rate(url: str, seconds: int, accept: str) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", f"Accept: {accept}", url],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    )  # fmt: skip
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    assert match, out.stdout
    return float(match.group(1))


def presigned(s3: SeaweedFS, key: str) -> str:
    url: str = s3.client().generate_presigned_url(
        "get_object", Params={"Bucket": "registry-gateway", "Key": key}, ExpiresIn=600
    )
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blob-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        work = Path(tmp)
        s3 = SeaweedFS.start(work / "s3")
        registry = Registry.start(work / "registry")
        redis = Redis.start(work / "redis")
        started: list[GatewayProcess] = []
        try:
            data = os.urandom(args.blob_mib * MiB)
            digest = push_blob(registry, "bench/blob", data)
            image = client.push_oci_image(registry, "bench/app", "v1", config=b"{}", layer=b"x")
            config = replica_config(registry, s3, "bench/", redis)
            started += [GatewayProcess.start(work / f"g{i}", config, env=S3_ENV) for i in range(3)]
            one = started[0]
            blob_url = f"{one.url}/v2/bench/blob/blobs/{digest}"
            curl_speed(blob_url)  # the fill
            key = next(k for k in s3.keys(prefix="bench/") if k.endswith(digest[7:]))
            direct, through = [], []
            for _ in range(args.runs):
                direct.append(curl_speed(presigned(s3, key)))
                through.append(curl_speed(blob_url))
            results["blob-hit-s3"] = {
                "blob_mib": args.blob_mib,
                "seaweedfs_mib_s": round(max(direct) / MiB, 1),
                "gateway_mib_s": round(max(through) / MiB, 1),
                "ratio": round(max(through) / max(direct), 2),
            }
            manifest = f"/v2/bench/app/manifests/{image.manifest_digest}"
            accept = client.MANIFEST_ACCEPT
            for gateway in started:
                curl_speed(f"{gateway.url}{manifest}")  # each replica knows it
            single = wrk_rate(f"{one.url}{manifest}", args.seconds, accept)
            with Balancer.start(work / "haproxy", [g.host for g in started]) as balancer:
                three = wrk_rate(f"{balancer.url}{manifest}", args.seconds, accept)
            results["manifest-replicas"] = {
                "one_replica_rps": round(single),
                "three_replicas_rps": round(three),
                "ratio": round(three / single, 2),
                "cores": os.cpu_count(),
            }
        finally:
            for gateway in started:
                gateway.stop()
            redis.stop()
            registry.stop()
            s3.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
