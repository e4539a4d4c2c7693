"""The bench harness: components per scenario, results, the scenario registry, shared set-up.

A scenario is a function ``(Bench) -> Outcome`` registered with ``@scenario(name, summary)``.
It starts what it needs through the Bench (``start_registry``, ``start_gateway``; the open
registry is shared by all scenarios), and everything it started is stopped when it returns.
Its Outcome holds table rows (``Metric``: direct, gateway, ratio), raw details for the JSON,
and problems (a failed check: wrong digest, HTTP errors, token fetches that should not be).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.components import images
from tests.components.registry import AuthMode, Registry
from tests.gateway_process import GatewayProcess

from .nginx import Nginx

MiB = 1 << 20
GiB = 1 << 30
CHUNK = MiB
HTTP_TIMEOUT = 60.0
# No proxy handler: an http_proxy variable must never send loopback traffic elsewhere.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Sizes:
    """How big and how long; ``--quick`` trades precision for a shorter run."""

    single_blob: int
    concurrent_blob: int
    wrk_seconds: int
    streams: int = 8
    runs: int = 3


FULL = Sizes(single_blob=GiB, concurrent_blob=256 * MiB, wrk_seconds=10)
QUICK = Sizes(single_blob=256 * MiB, concurrent_blob=64 * MiB, wrk_seconds=5)


@dataclass
class Metric:
    """One table row. ``direct`` is None for gateway-only numbers (RSS, token counts)."""

    name: str
    unit: str
    direct: float | None
    gateway: float | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.direct is None or self.gateway is None or self.direct == 0:
            return None
        return self.gateway / self.direct

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "direct": self.direct,
            "gateway": self.gateway,
            "ratio": self.ratio,
            "note": self.note,
        }


@dataclass
class Outcome:
    """What a scenario hands back: table rows, raw details for the JSON, failed checks
    (``problems``: the run exits 1) and observations worth a look (``notes``)."""

    metrics: list[Metric] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, condition: bool, problem: str) -> bool:
        """Record ``problem`` unless ``condition`` holds; return ``condition``."""
        if not condition:
            self.problems.append(problem)
        return condition


class Bench:
    """The temp dir, the sizes, and the components running for the current scenario."""

    def __init__(self, workdir: Path, sizes: Sizes, gateway_src: Path | None = None) -> None:
        self.workdir = workdir
        self.sizes = sizes
        # A directory holding a `gateway` package to run instead of the working tree's.
        self.gateway_src = gateway_src
        self._shared = contextlib.ExitStack()
        self._scenario = contextlib.ExitStack()
        self._open_registry: Registry | None = None

    @contextlib.contextmanager
    def scenario_scope(self) -> Iterator[None]:
        """Stop what a scenario started when it ends, so the next one runs on a quiet box."""
        try:
            yield
        finally:
            self._scenario.close()

    def close(self) -> None:
        self._scenario.close()
        self._shared.close()

    def open_registry(self) -> Registry:
        """A docker-registry without auth, shared by every scenario that wants one."""
        if self._open_registry is None:
            self._open_registry = Registry.start(self.workdir / "registry-open", None)
            self._shared.callback(self._open_registry.stop)
        return self._open_registry

    def start_registry(self, name: str, auth: AuthMode) -> Registry:
        """A docker-registry (plus token server in token mode) for this scenario only."""
        registry = Registry.start(self.workdir / name, auth)
        self._scenario.callback(registry.stop)
        return registry

    def start_nginx(self, name: str, registry: Registry) -> Nginx:
        """nginx proxy_pass relaying to ``registry``, for this scenario only."""
        nginx = Nginx.start(self.workdir / name, registry.host)
        self._scenario.callback(nginx.stop)
        return nginx

    def start_gateway(self, name: str, config: Mapping[str, Any]) -> GatewayProcess:
        """A fresh gateway for this scenario: its memory and counters are the scenario's."""
        env = {"PYTHONPATH": str(self.gateway_src)} if self.gateway_src else None
        gateway = GatewayProcess.start(self.workdir / name, config, env=env)
        self._scenario.callback(gateway.stop)
        return gateway


ScenarioFn = Callable[[Bench], Outcome]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    run: ScenarioFn


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, summary: str) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register a scenario under ``name`` (selectable with ``--scenarios``), in file order."""

    def register(fn: ScenarioFn) -> ScenarioFn:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} registered twice")
        SCENARIOS[name] = Scenario(name, summary, fn)
        return fn

    return register


def gateway_config(
    registry: Registry,
    credentials: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One upstream keyed by the registry's host:port and routed by default; ``extra`` keys
    (``clients``, ``metrics``, ...) are merged at the top level."""
    upstream: dict[str, Any] = {"url": registry.url}
    if credentials is not None:
        upstream["credentials"] = dict(credentials)
    return {"upstreams": {registry.host: upstream}, "routing": {"default": registry.host}, **extra}


def blob_chunks(size: int, seed: int) -> Iterator[bytes]:
    """``size`` deterministic bytes: one random 1 MiB block, each copy stamped with its index.

    Fast (no randomness per chunk), never the same chunk twice, one chunk in memory.
    """
    block = random.Random(seed).randbytes(CHUNK)
    for index in range(-(-size // CHUNK)):
        length = min(CHUNK, size - index * CHUNK)
        yield (index.to_bytes(8, "big") + block[8:])[:length]


def push_generated_blob(registry: Registry, repo: str, size: int, seed: int) -> str:
    """Stream a generated blob into ``repo``; return its digest."""
    started = time.monotonic()
    digest = images.push_blob(registry, repo, blob_chunks(size, seed))
    log(f"  pushed {size / MiB:.0f} MiB blob {digest[:19]}… in {time.monotonic() - started:.1f}s")
    return digest


def push_small_image(bench: Bench, registry: Registry, repo: str, tag: str) -> str:
    """A one-layer image (umoci + skopeo) at ``repo:tag``; return its manifest digest."""
    layout = images.build_image(
        bench.workdir / "layouts", f"bench-{registry.port}", files={"/bench.txt": b"bench\n"}
    )
    return images.push(layout, registry, repo, tag).manifest_digest


def blob_url(base: str, repo: str, digest: str) -> str:
    return f"{base}/v2/{repo}/blobs/{digest}"


def sha256_of_url(url: str, expected_size: int, timeout: float) -> tuple[str, int]:
    """sha256 and length of a body streamed through hashlib; bounded by size and time."""
    hasher = hashlib.sha256()
    received = 0
    deadline = time.monotonic() + timeout
    with OPENER.open(url, timeout=HTTP_TIMEOUT) as response:
        while received <= expected_size and time.monotonic() < deadline:
            chunk = response.read(CHUNK)
            if not chunk:
                break
            hasher.update(chunk)
            received += len(chunk)
    return f"sha256:{hasher.hexdigest()}", received


_TOKENS = re.compile(r"^registry_gateway_upstream_tokens_total\{([^}]*)\}\s+(\S+)$", re.M)
_RESULT = re.compile(r'result="([^"]*)"')


def upstream_tokens(gateway: GatewayProcess) -> dict[str, float]:
    """``registry_gateway_upstream_tokens_total`` summed by result (cached, fetched, error)."""
    with OPENER.open(f"{gateway.url}/metrics", timeout=HTTP_TIMEOUT) as response:
        text = response.read().decode()
    counts = {"cached": 0.0, "fetched": 0.0, "error": 0.0}
    for labels, value in _TOKENS.findall(text):
        if result := _RESULT.search(labels):
            counts[result.group(1)] = counts.get(result.group(1), 0.0) + float(value)
    return counts


def observe_gateway_log(out: Outcome, gateway: GatewayProcess, limit: int = 5) -> None:
    """Count the gateway's log lines per level; a warning or error becomes a note."""
    levels: dict[str, int] = {}
    notable: list[str] = []
    for line in gateway.log_text().splitlines():
        if line.startswith("==> ") or not line.strip():
            continue
        try:
            entry = json.loads(line)
            level = str(entry.get("level", "?"))
        except (json.JSONDecodeError, AttributeError):
            entry, level = {}, "non-json"
        levels[level] = levels.get(level, 0) + 1
        if level not in ("debug", "info") and len(notable) < limit:
            notable.append(_summary(entry) if entry else line[:200])
    out.details["gateway_log_levels"] = levels
    if notable:
        out.details["gateway_log_notable"] = notable
        counts = ", ".join(
            f"{n} {lvl}" for lvl, n in levels.items() if lvl not in ("info", "debug")
        )
        out.notes.append(f"gateway logged {counts} line(s); first: {notable[0]}")


def _summary(entry: Mapping[str, Any]) -> str:
    """Event plus the last line of its traceback, if any (the exception type and message)."""
    text = f"{entry.get('level')} {entry.get('event')!r}"
    exception = entry.get("exception")
    if isinstance(exception, str) and exception.strip():
        text += f" ({exception.strip().splitlines()[-1]})"
    return text


def pair_ratios(direct: Sequence[float], gateway: Sequence[float]) -> str:
    """Range of gateway/direct over the alternating pairs: how noisy the median is."""
    ratios = [g / d for d, g in zip(direct, gateway, strict=False) if d]
    if not ratios:
        return ""
    return f"pairs {min(ratios):.2f}-{max(ratios):.2f}x"


def median_or_none(values: Sequence[float], scale: float = 1.0) -> float | None:
    return statistics.median(values) / scale if values else None


def in_mib(value: float | None) -> float | None:
    return None if value is None else value / MiB


def log(message: str) -> None:
    """Progress on stderr; stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)
