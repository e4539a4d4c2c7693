"""Load generators and process observations: curl for bodies, wrk for request rates, /proc.

Both clients are C programs: one curl process moves well over 1 GiB/s on loopback and wrk
drives thousands of requests per second per thread, so what is measured is the server, not the
client (a Python client would saturate a core near the rates being compared). Every run is
bounded: curl by ``--max-time``, wrk by ``-d``, and each subprocess by a timeout on top.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CURL_FORMAT = "%{http_code} %{size_download} %{speed_download} %{time_total}"
SAMPLE_INTERVAL = 0.02


def require(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise RuntimeError(f"{binary} not found on PATH")
    return found


@dataclass(frozen=True)
class Download:
    status: int
    size: int
    speed: float  # bytes per second: curl's %{speed_download}
    seconds: float


def curl_argv(url: str, max_seconds: float) -> list[str]:
    return [
        require("curl"),
        *("-s", "-o", "/dev/null", "--noproxy", "*"),
        *("--max-time", f"{max_seconds:g}", "-w", CURL_FORMAT),
        url,
    ]


def parse_curl(output: str) -> Download:
    status, size, speed, seconds = output.split()
    return Download(int(status), int(size), float(speed), float(seconds))


def curl_download(url: str, max_seconds: float) -> Download:
    """One GET, body to /dev/null."""
    result = subprocess.run(
        curl_argv(url, max_seconds),
        capture_output=True,
        text=True,
        timeout=max_seconds + 10,
        check=False,
    )
    return parse_curl(result.stdout)


@dataclass(frozen=True)
class Parallel:
    downloads: list[Download]
    seconds: float  # wall time from the first start to the last exit
    rss_sampled_max: int  # bytes; 0 when no process was watched

    @property
    def total_bytes(self) -> int:
        return sum(d.size for d in self.downloads)

    @property
    def aggregate(self) -> float:
        """Bytes per second over all streams together."""
        return self.total_bytes / self.seconds


def curl_parallel(
    url: str, streams: int, max_seconds: float, *, watch_pid: int | None = None
) -> Parallel:
    """``streams`` curl processes at once; VmRSS of ``watch_pid`` is sampled meanwhile."""
    started = time.monotonic()
    deadline = started + max_seconds + 10
    procs = [
        subprocess.Popen(
            curl_argv(url, max_seconds),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(streams)
    ]
    rss_max = 0
    try:
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if watch_pid is not None:
                rss_max = max(rss_max, memory(watch_pid).get("VmRSS", 0))
            time.sleep(SAMPLE_INTERVAL)
        elapsed = time.monotonic() - started
        outputs = [p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    return Parallel([parse_curl(o) for o in outputs], elapsed, rss_max)


# wrk's done() hook prints one JSON line, so percentiles need no scraping of its text output.
WRK_DONE_SCRIPT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"bytes\\": %d, " ..
    "\\"errors\\": {\\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"status\\": %d, " ..
    "\\"timeout\\": %d}, \\"latency_us\\": {\\"mean\\": %.1f, \\"p50\\": %.1f, " ..
    "\\"p90\\": %.1f, \\"p99\\": %.1f, \\"max\\": %.1f}}\\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""
WRK_MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]  # connect, read, write, status (non-2xx/3xx), timeout
    latency_us: dict[str, float]  # mean, p50, p90, p99, max

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def latency_ms(self, key: str) -> float:
        return self.latency_us[key] / 1000

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": self.seconds,
            "requests_per_second": self.rate,
            "bytes": self.bytes,
            "errors": self.errors,
            "latency_ms": {k: v / 1000 for k, v in self.latency_us.items()},
        }


def run_wrk(
    workdir: Path,
    url: str,
    headers: Mapping[str, str],
    *,
    seconds: int,
    threads: int = 2,
    connections: int = 16,
) -> WrkResult:
    """``wrk -t -c -d`` against one URL with fixed headers (keep-alive connections)."""
    script = workdir / "wrk-done.lua"
    if not script.exists():
        script.write_text(WRK_DONE_SCRIPT)
    argv = [
        require("wrk"),
        *(f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"),
        *("-s", str(script)),
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    for line in result.stdout.splitlines():
        if line.startswith(WRK_MARKER):
            data = json.loads(line.removeprefix(WRK_MARKER))
            return WrkResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                bytes=data["bytes"],
                errors=data["errors"],
                latency_us=data["latency_us"],
            )
    raise RuntimeError(f"wrk exited {result.returncode} without a summary: {result.stderr}")


def memory(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS since start) and VmRSS of a process, in bytes, from /proc."""
    values: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid``: their memory would not show in its VmHWM."""
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                children += [int(c) for c in (task / "children").read_text().split()]
    return children


def cpu_busy(seconds: float = 1.0) -> float:
    """Busy share of all CPUs over ``seconds`` (/proc/stat), 0.0-1.0: sampled while the
    bench is idle, it is the load other processes put on the machine."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0)


def tool_version(argv: list[str]) -> str:
    """First line of ``argv``'s output, or "?"; for the environment block of the results."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "?"


UPLOAD_FORMAT = "%{http_code} %{size_upload} %{speed_upload} %{time_total}"


def curl_upload(
    url: str, path: Path, max_seconds: float, *, watch_pid: int | None = None
) -> tuple[Download, int]:
    """One streamed ``PUT`` of the file at ``path`` (curl -T); VmRSS of ``watch_pid`` sampled."""
    argv = [
        require("curl"),
        *("-s", "-o", "/dev/null", "--noproxy", "*", "-T", str(path)),
        *("-H", "Content-Type: application/octet-stream"),
        *("--max-time", f"{max_seconds:g}", "-w", UPLOAD_FORMAT),
        url,
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    rss_max = 0
    deadline = time.monotonic() + max_seconds + 10
    while process.poll() is None and time.monotonic() < deadline:
        if watch_pid is not None:
            rss_max = max(rss_max, memory(watch_pid).get("VmRSS", 0))
        time.sleep(SAMPLE_INTERVAL)
    if process.poll() is None:
        process.kill()
    output, _ = process.communicate(timeout=10)
    return parse_curl(output), rss_max
def run_ab_head(
    url: str, headers: Mapping[str, str], *, seconds: int, connections: int = 4
) -> WrkResult:
    """HEAD load with ``ab -k -i`` (keep-alive): wrk waits for a body after a HEAD and stalls.

    Latency percentiles from ab are whole milliseconds, coarser than wrk's.
    """
    argv = [
        require("ab"),
        *("-k", "-i", "-q", "-c", str(connections), "-t", str(seconds), "-n", "10000000"),
        *("-s", "5"),
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    text = result.stdout

    def number(pattern: str) -> float:
        found = re.search(pattern, text, re.MULTILINE)
        if found is None:
            raise RuntimeError(
                f"ab exited {result.returncode} without {pattern!r}: {result.stderr}"
            )
        return float(found.group(1))

    requests = int(number(r"^Complete requests:\s+(\d+)"))
    percentiles = {
        key: number(rf"^\s+{pct}%\s+(\d+)") * 1000
        for key, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
    }
    non_2xx = re.search(r"^Non-2xx responses:\s+(\d+)", text, re.MULTILINE)
    return WrkResult(
        requests=requests,
        seconds=number(r"^Time taken for tests:\s+([\d.]+)"),
        bytes=0,
        errors={
            "connect": 0,
            "read": int(number(r"^Failed requests:\s+(\d+)")),
            "write": 0,
            "status": int(non_2xx.group(1)) if non_2xx else 0,
            "timeout": 0,
        },
        latency_us={
            "mean": number(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)") * 1000,
            **percentiles,
        },
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its direct children (nginx's workers), from /proc.

    CPU per request stays comparable on a busy shared machine, where request rates swing with
    whatever else runs.
    """
    pids = [pid]
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(child) for child in (task / "children").read_text().split()]
    ticks = 0
    for each in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
